//! Opening the TCP connection to a peer, optionally from inside a named network namespace.
//!
//! A socket belongs to the network namespace of the thread that created it, for its whole
//! life. To connect from `/run/netns/NAME` without moving the daemon, a short-lived thread
//! enters the namespace (`setns`, which affects only that thread), creates the socket and
//! exits; the socket is then used by tokio like any other. Not for: listening (netban only
//! connects actively) or anything but TCP.
//!
//! Before connecting, the socket gets the peer's protection options ([`Protection`]): a TCP
//! MD5 signature key (RFC 2385, `TCP_MD5SIG`) and GTSM (RFC 5082: send with TTL 255, accept
//! only packets whose TTL shows they crossed at most N hops: `IP_MINTTL` /
//! `IPV6_MINHOPCOUNT`). This module holds the crate's `unsafe` for sockets, each block with
//! its `SAFETY:` note.
//!
//! The one module of netban-targets that calls the kernel without a safe wrapper.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

/// Where iproute2 keeps named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// The largest TCP MD5 key Linux takes (`TCP_MD5SIG_MAXKEYLEN`).
pub const MD5_MAX_KEY_LEN: usize = 80;

/// Per-peer socket options that keep strangers out of the session. No `Debug`: it holds the
/// MD5 key.
#[derive(Clone, Default)]
pub struct Protection {
    /// The TCP MD5 signature key shared with the router.
    pub md5_key: Option<Vec<u8>>,
    /// GTSM: the most hops the router may be away (1: directly connected).
    pub ttl_security_hops: Option<u8>,
}

/// Connects to `peer` (from `local` if given), creating the socket inside `netns` if given,
/// with `protection` applied, within `timeout`. The stream has TCP_NODELAY set: every UPDATE
/// should leave at once.
pub async fn connect(
    netns: Option<&str>,
    peer: SocketAddr,
    local: Option<IpAddr>,
    protection: &Protection,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = match netns {
        Some(ns) => socket_in_netns(ns, peer.is_ipv4())?,
        None if peer.is_ipv4() => TcpSocket::new_v4()?,
        None => TcpSocket::new_v6()?,
    };
    if let Some(key) = &protection.md5_key {
        set_md5_key(&socket, peer.ip(), key)?;
    }
    if let Some(hops) = protection.ttl_security_hops {
        set_ttl_security(&socket, peer.is_ipv4(), hops)?;
    }
    if let Some(local) = local {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    let stream = tokio::time::timeout(timeout, socket.connect(peer))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect did not complete within {timeout:?}"),
            )
        })??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A fresh non-blocking TCP socket created inside `/run/netns/{netns}`.
fn socket_in_netns(netns: &str, v4: bool) -> io::Result<TcpSocket> {
    let path = Path::new(NETNS_DIR).join(netns);
    let fd = std::thread::scope(|scope| {
        scope
            .spawn(|| -> io::Result<OwnedFd> {
                let ns = std::fs::File::open(&path).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("network namespace {}: {e}", path.display()),
                    )
                })?;
                // SAFETY: setns on a valid namespace fd changes only this thread's namespace;
                // the thread ends right after creating the socket.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    let e = io::Error::last_os_error();
                    return Err(io::Error::new(
                        e.kind(),
                        format!("entering network namespace {}: {e}", path.display()),
                    ));
                }
                let domain = if v4 { libc::AF_INET } else { libc::AF_INET6 };
                // SAFETY: socket(2) has no memory-safety preconditions; the result is checked.
                let fd = unsafe {
                    libc::socket(
                        domain,
                        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        libc::IPPROTO_TCP,
                    )
                };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: `fd` is a freshly created socket this code alone owns.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            })
            .join()
            .map_err(|_| io::Error::other("the namespace thread panicked"))?
    })?;
    Ok(TcpSocket::from_std_stream(std::net::TcpStream::from(fd)))
}

/// `struct tcp_md5sig` of `<linux/tcp.h>` (the libc crate does not define it).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MD5_MAX_KEY_LEN],
}

/// Signs every segment to and from `peer` with `key` (RFC 2385). The kernel then drops
/// unsigned or wrongly signed segments from that address, so a router without the same key
/// never completes the handshake.
fn set_md5_key(socket: &TcpSocket, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.is_empty() || key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a TCP MD5 key has 1 to {MD5_MAX_KEY_LEN} bytes, not {}",
                key.len()
            ),
        ));
    }
    // SAFETY: all-zero bytes are a valid value of this plain C struct (integers and arrays).
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    match peer {
        IpAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for every sockaddr_*; the
            // write stays inside `sig.addr`.
            unsafe {
                std::ptr::write(
                    std::ptr::addr_of_mut!(sig.addr).cast::<libc::sockaddr_in>(),
                    sin,
                )
            };
        }
        IpAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe {
                std::ptr::write(
                    std::ptr::addr_of_mut!(sig.addr).cast::<libc::sockaddr_in6>(),
                    sin6,
                )
            };
        }
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    setsockopt(
        socket,
        libc::IPPROTO_TCP,
        libc::TCP_MD5SIG,
        &sig,
        "TCP_MD5SIG",
    )
}

/// GTSM (RFC 5082): packets leave with TTL (hop limit) 255, and the kernel drops any whose
/// TTL shows it crossed more than `hops` routers, so a remote host cannot even reach the
/// session's TCP state.
fn set_ttl_security(socket: &TcpSocket, v4: bool, hops: u8) -> io::Result<()> {
    let min: libc::c_int = 256 - libc::c_int::from(hops.max(1));
    let max: libc::c_int = 255;
    if v4 {
        setsockopt(socket, libc::IPPROTO_IP, libc::IP_TTL, &max, "IP_TTL")?;
        setsockopt(socket, libc::IPPROTO_IP, libc::IP_MINTTL, &min, "IP_MINTTL")
    } else {
        setsockopt(
            socket,
            libc::IPPROTO_IPV6,
            libc::IPV6_UNICAST_HOPS,
            &max,
            "IPV6_UNICAST_HOPS",
        )?;
        setsockopt(
            socket,
            libc::IPPROTO_IPV6,
            libc::IPV6_MINHOPCOUNT,
            &min,
            "IPV6_MINHOPCOUNT",
        )
    }
}

fn setsockopt<T>(
    socket: &TcpSocket,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    shown: &str,
) -> io::Result<()> {
    // SAFETY: `value` points to a live, initialised T of the size passed; the kernel copies
    // it and keeps no pointer; the fd is owned by `socket` for the whole call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (value as *const T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setsockopt {shown}: {e}")));
    }
    Ok(())
}
