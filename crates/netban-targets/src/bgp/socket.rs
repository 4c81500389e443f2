//! Opening the TCP connection to a peer, optionally from inside a named network namespace.
//!
//! A socket belongs to the network namespace of the thread that created it, for its whole
//! life. To connect from `/run/netns/NAME` without moving the daemon, a short-lived thread
//! enters the namespace (`setns`, which affects only that thread), creates the socket and
//! exits; the socket is then used by tokio like any other. Not for: listening (netban only
//! connects actively) or anything but TCP.
//!
//! The one module of netban-targets that calls the kernel without a safe wrapper (setns).
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

/// Where iproute2 keeps named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Connects to `peer` (from `local` if given), creating the socket inside `netns` if given,
/// within `timeout`. The stream has TCP_NODELAY set: every UPDATE should leave at once.
pub async fn connect(
    netns: Option<&str>,
    peer: SocketAddr,
    local: Option<IpAddr>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = match netns {
        Some(ns) => socket_in_netns(ns, peer.is_ipv4())?,
        None if peer.is_ipv4() => TcpSocket::new_v4()?,
        None => TcpSocket::new_v6()?,
    };
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
