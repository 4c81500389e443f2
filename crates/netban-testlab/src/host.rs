//! A host: one namespace of a lab, and what can be done in it.

use crate::lab::{invalid, run_checked, Shared};
use crate::probe::{self, python, secs, succeeds_within};
use crate::wait_until;
use std::ffi::OsStr;
use std::io;
use std::net::IpAddr;
use std::ops::{Deref, DerefMut};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// One network namespace of a [`crate::Lab`]. Cheap to clone; it lives as long as its lab
/// (after the lab's cleanup every command in it fails).
#[derive(Clone, Debug)]
pub struct Host {
    label: String,
    netns: String,
    shared: Arc<Shared>,
}

/// How long a started listener may take to accept its first connection.
const LISTENER_READY: Duration = Duration::from_secs(10);

impl Host {
    pub(crate) fn new(label: &str, netns: &str, shared: Arc<Shared>) -> Host {
        Host {
            label: label.to_string(),
            netns: netns.to_string(),
            shared,
        }
    }

    /// The namespace name (for `ip netns exec NAME`, or a target's `netns` setting).
    pub fn name(&self) -> &str {
        &self.netns
    }

    /// The short name given to [`crate::Lab::host`] ("router").
    pub fn label(&self) -> &str {
        &self.label
    }

    /// `ip netns exec NAME program`, ready for arguments and stdio settings. Not tracked:
    /// start it with [`Host::spawn_command`] if it should be killed at cleanup.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).arg(program);
        cmd
    }

    /// Runs a program in the namespace to completion (stdin empty) and returns its output,
    /// whatever its exit status.
    pub fn run<I, S>(&self, program: &str, args: I) -> io::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
    }

    /// Like [`Host::run`], but a non-zero exit is an error carrying stderr; returns stdout.
    pub fn run_ok<I, S>(&self, program: &str, args: I) -> io::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(program);
        cmd.args(args);
        run_checked(&mut cmd, &format!("{program} in {}", self.netns))
    }

    /// Starts a program in the namespace (stdio to /dev/null) and tracks its PID so the lab
    /// kills it at cleanup.
    pub fn spawn<I, S>(&self, program: &str, args: I) -> io::Result<Process>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.spawn_command(cmd)
    }

    /// Starts a command made by [`Host::command`] (with whatever stdio it was given) and tracks
    /// its PID for cleanup.
    pub fn spawn_command(&self, mut cmd: Command) -> io::Result<Process> {
        let child = cmd.spawn()?;
        self.shared.track_pid(child.id());
        Ok(Process { child: Some(child) })
    }

    /// Runs `work` on a thread that has entered this namespace (`setns`), and returns its
    /// result: for starting a program there without `ip netns exec` in the way (a benchmark's
    /// reference must not pay for it).
    #[allow(unsafe_code)] // setns: see the SAFETY comment
    pub fn enter<T: Send>(&self, work: impl FnOnce() -> T + Send) -> io::Result<T> {
        use std::os::fd::AsRawFd;
        let path = format!("/run/netns/{}", self.netns);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let namespace = std::fs::File::open(&path)?;
                    // SAFETY: setns on a valid namespace file descriptor changes only the
                    // network namespace of this short-lived thread.
                    if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(work())
                })
                .join()
                .map_err(|_| io::Error::other(format!("a thread in {} panicked", self.netns)))?
        })
    }

    /// `ip -n NAME ARGS`, failing with stderr.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.netns]).args(args);
        run_checked(
            &mut cmd,
            &format!("ip -n {} {}", self.netns, args.join(" ")),
        )
        .map(drop)
    }

    /// Sets sysctls inside the namespace.
    pub fn sysctl(&self, settings: &[(&str, &str)]) -> io::Result<()> {
        let args: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut all = vec!["-q".to_string(), "-w".to_string()];
        all.extend(args);
        self.run_ok("sysctl", &all).map(drop)
    }

    /// Adds CIDR addresses to an interface (IPv6 ones without duplicate address detection).
    pub fn add_addrs(&self, ifname: &str, cidrs: &[&str]) -> io::Result<()> {
        for cidr in cidrs {
            let (addr, _) = cidr
                .split_once('/')
                .ok_or_else(|| invalid(format!("address {cidr:?} needs a /length")))?;
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| invalid(format!("{cidr:?} is not an IP address/length")))?;
            if addr.is_ipv6() {
                self.ip(&["-6", "addr", "add", cidr, "dev", ifname, "nodad"])?;
            } else {
                self.ip(&["addr", "add", cidr, "dev", ifname])?;
            }
        }
        Ok(())
    }

    /// Creates a bridge (STP and multicast snooping off) with the given addresses, up.
    pub fn add_bridge(&self, name: &str, cidrs: &[&str]) -> io::Result<()> {
        self.ip(&[
            "link",
            "add",
            name,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        self.add_addrs(name, cidrs)?;
        self.ip(&["link", "set", name, "up"])
    }

    /// Adds (or replaces) a route to `dest` (a CIDR) via the gateway `via`.
    pub fn route(&self, dest: &str, via: &str) -> io::Result<()> {
        self.ip(&["route", "replace", dest, "via", via])
    }

    /// Turns on IPv4 and IPv6 forwarding in the namespace.
    pub fn enable_forwarding(&self) -> io::Result<()> {
        self.sysctl(&[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
        ])
    }

    /// Whether a TCP connection from this host to `addr:port` is accepted within `timeout`.
    /// False also when it is refused or dropped.
    ///
    /// # Panics
    /// If `addr` is not an IP address (a bug in the calling test).
    pub fn tcp_connects(&self, addr: &str, port: u16, timeout: Duration) -> bool {
        check_addr(addr);
        let mut cmd = self.command(python());
        cmd.args([
            "-c",
            probe::TCP_CONNECT,
            addr,
            &port.to_string(),
            &secs(timeout),
        ]);
        succeeds_within(&mut cmd, timeout + Duration::from_secs(5))
    }

    /// Whether one ICMP (or ICMPv6) echo to `addr` is answered within one second.
    ///
    /// # Panics
    /// If `addr` is not an IP address.
    pub fn pings(&self, addr: &str) -> bool {
        self.pings_within(addr, Duration::from_secs(1))
    }

    /// Whether one echo to `addr` is answered within `timeout`.
    pub fn pings_within(&self, addr: &str, timeout: Duration) -> bool {
        check_addr(addr);
        let mut cmd = self.command(python());
        cmd.args(["-c", probe::ICMP_ECHO, addr, &secs(timeout)]);
        succeeds_within(&mut cmd, timeout + Duration::from_secs(5))
    }

    /// Sends `count` one-way UDP datagrams from this host to `addr:port`: traffic that needs
    /// no answer, so it shows whether packets *from* this host get through (a blackhole route
    /// for this host on the way kills only the answers to it). Count them where they arrive.
    ///
    /// # Panics
    /// If `addr` is not an IP address.
    pub fn send_udp(&self, addr: &str, port: u16, count: u32) -> io::Result<()> {
        check_addr(addr);
        let mut cmd = self.command(python());
        cmd.args([
            "-c",
            probe::UDP_SEND,
            addr,
            &port.to_string(),
            &count.to_string(),
        ]);
        if succeeds_within(&mut cmd, Duration::from_secs(10)) {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "sending {count} UDP datagrams from {} to {addr}:{port} failed",
                self.netns
            )))
        }
    }

    /// Starts a TCP listener on port `port` of every address (IPv4 and IPv6) that accepts and
    /// closes connections, and returns once it accepts one (bounded wait).
    pub fn spawn_tcp_listener(&self, port: u16) -> io::Result<Process> {
        let mut child = self.spawn(python(), ["-c", probe::TCP_LISTENER, &port.to_string()])?;
        let ready = wait_until(LISTENER_READY, Duration::from_millis(20), || {
            matches!(child.try_wait(), Ok(None))
                && self.tcp_connects("127.0.0.1", port, Duration::from_millis(500))
        });
        if ready {
            return Ok(child);
        }
        let _ = child.kill();
        let status = child.wait()?;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "TCP listener on port {port} in {} not accepting after {LISTENER_READY:?} ({status})",
                self.netns
            ),
        ))
    }
}

/// A process started in a lab host: a [`Child`] (through `Deref`) that is killed, if still
/// running, and reaped when dropped, so tests leave neither processes nor zombies. The lab
/// kills it at cleanup too, whichever comes first.
#[derive(Debug)]
pub struct Process {
    child: Option<Child>,
}

impl Process {
    /// The `Child` itself, no longer killed on drop (the lab's cleanup still kills it).
    pub fn into_child(mut self) -> Child {
        self.child
            .take()
            .expect("a Process always holds its child until dropped")
    }
}

impl Deref for Process {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.child
            .as_ref()
            .expect("a Process always holds its child until dropped")
    }
}

impl DerefMut for Process {
    fn deref_mut(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("a Process always holds its child until dropped")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

fn check_addr(addr: &str) {
    assert!(
        addr.parse::<IpAddr>().is_ok(),
        "{addr:?} is not an IP address"
    );
}
