//! Connectivity probes run inside a namespace: small python3 programs, each bounded in time.
//!
//! python3 is on every machine of this project; `ping` is not (and needs no extra package this
//! way). The ICMP probe uses a raw socket, which needs root like the rest of the lab.

use crate::wait_until;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// TCP connect with a timeout. argv: address, port, timeout in seconds. Exit 0 if connected.
pub(crate) const TCP_CONNECT: &str = r#"
import socket, sys
addr, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
family = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.settimeout(timeout)
try:
    s.connect((addr, port))
except OSError:
    sys.exit(1)
sys.exit(0)
"#;

/// One ICMP or ICMPv6 echo request; exit 0 if the matching reply from that address arrives
/// in time. argv: address, timeout in seconds.
pub(crate) const ICMP_ECHO: &str = r#"
import os, select, socket, struct, sys, time
addr, timeout = sys.argv[1], float(sys.argv[2])
v6 = ":" in addr
if v6:
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    request, reply, family = 128, 129, socket.AF_INET6
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    request, reply, family = 8, 0, socket.AF_INET
ident, payload = os.getpid() & 0xFFFF, b"netban-testlab"
def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF
header = struct.pack("!BBHHH", request, 0, 0, ident, 1)
# The kernel fills in the ICMPv6 checksum; ICMPv4 needs ours.
csum = 0 if v6 else checksum(header + payload)
s.sendto(struct.pack("!BBHHH", request, 0, csum, ident, 1) + payload, (addr, 0))
want = socket.inet_pton(family, addr)
deadline = time.monotonic() + timeout
while True:
    left = deadline - time.monotonic()
    if left <= 0 or not select.select([s], [], [], left)[0]:
        sys.exit(1)
    data, src = s.recvfrom(4096)
    if not v6:
        data = data[(data[0] & 0x0F) * 4:]
    if len(data) < 8 or socket.inet_pton(family, src[0]) != want:
        continue
    kind, _, _, got_ident, seq = struct.unpack("!BBHHH", data[:8])
    if kind == reply and got_ident == ident and seq == 1:
        sys.exit(0)
"#;

/// Sends COUNT one-way UDP datagrams to ADDRESS:PORT (nothing is awaited). argv: address,
/// port, count. Exit 0 once all were handed to the kernel.
pub(crate) const UDP_SEND: &str = r#"
import socket, sys
addr, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
for i in range(count):
    s.sendto(b"netban-testlab %d" % i, (addr, port))
"#;

/// Accepts TCP connections on [::]:PORT (IPv4 too), greets and closes each. argv: port.
pub(crate) const TCP_LISTENER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1])))
s.listen(128)
while True:
    c, _ = s.accept()
    try:
        c.sendall(b"netban-testlab\n")
    except OSError:
        pass
    c.close()
"#;

/// The Python interpreter: the system one if present (fast to start), else whatever `python3`
/// the PATH gives.
pub(crate) fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Runs `cmd` with its output discarded and reports whether it exited 0 within `limit`;
/// kills it if it has not.
pub(crate) fn succeeds_within(cmd: &mut Command, limit: Duration) -> bool {
    let Ok(mut child) = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let mut status = None;
    wait_until(limit, Duration::from_millis(5), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    match status {
        Some(s) => s.success(),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }
}

/// Seconds as python's float literal.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}
