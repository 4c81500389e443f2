//! A BGP peer that stops reading: a raw TCP socket (the real thing, no mock of a router) that
//! completes the handshake with netban's own codec, then never reads again while it keeps
//! sending KEEPALIVEs every second, so netban's hold timer stays happy and only a bounded
//! write can notice. Its receive buffer is made small so that its TCP window closes after a
//! few kB. It counts the connections netban makes.

use netban_targets::bgp::message::{Capability, Message, Open};
use netban_testlab::Host;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct UnreadPeer {
    connections: Arc<AtomicUsize>,
}

impl UnreadPeer {
    /// Listens on `addr` inside `host`'s namespace as AS `asn`, proposing `hold_time`.
    #[allow(unsafe_code)] // setsockopt: see the SAFETY comment
    pub fn start(host: &Host, addr: &str, asn: u32, hold_time: u16) -> UnreadPeer {
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        // A socket stays in the namespace it was made in, whichever thread then uses it.
        let listener = host
            .enter(|| TcpListener::bind(addr))
            .expect("entering the namespace")
            .expect("listening");
        std::thread::spawn(move || {
            let small: libc::c_int = 4096;
            // SAFETY: a valid fd and a c_int option value of the size passed.
            unsafe {
                libc::setsockopt(
                    listener.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&small as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            ready_tx.send(()).unwrap();
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    // Read netban's OPEN (and whatever else fits) once, then never again.
                    let mut first = [0u8; 512];
                    let _ = s.read(&mut first);
                    let open = Message::Open(Open {
                        version: 4,
                        my_as: asn as u16,
                        hold_time,
                        bgp_id: Ipv4Addr::new(198, 18, 0, 1),
                        capabilities: vec![
                            Capability::Multiprotocol { afi: 1, safi: 1 },
                            Capability::Multiprotocol { afi: 2, safi: 1 },
                            Capability::FourOctetAs(asn),
                        ],
                    });
                    if s.write_all(&open.encode()).is_err() {
                        return;
                    }
                    while s.write_all(&Message::Keepalive.encode()).is_ok() {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                });
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("unread peer listening");
        UnreadPeer { connections }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}
