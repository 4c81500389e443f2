//! A tiny misbehaving BGP peer: this test file's own code, not a router. It listens inside a
//! lab namespace and plays a fixed script over three connections: (1) it answers netban's
//! OPEN with bytes that are not BGP, and records netban's NOTIFICATION; (2) it answers with a
//! NOTIFICATION (Cease, administrative reset); (3) it behaves, and records the routes and
//! communities netban announces. It uses netban's own codec, so it checks the session logic,
//! not the encoding (BIRD and FRR do that in the other tests).

use ipnet::IpNet;
use netban_targets::bgp::message::{
    self, decode_header, Attribute, Capability, Message, Notification, Open, HEADER_LEN,
};
use netban_testlab::Host;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Report {
    pub connections: usize,
    pub answer_to_garbage: Option<Notification>,
    pub announced: Vec<IpNet>,
    pub communities: Vec<u32>,
}

pub struct FakePeer {
    report: mpsc::Receiver<Result<Report, String>>,
}

impl FakePeer {
    /// Starts the peer on `addr` inside `host`'s namespace, with AS `asn`.
    pub fn start(host: &Host, addr: &str, asn: u32) -> FakePeer {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        // A socket stays in the namespace it was made in, whichever thread then uses it.
        let listener = host
            .enter(|| TcpListener::bind(addr))
            .expect("entering the namespace")
            .expect("listening");
        std::thread::spawn(move || {
            ready_tx.send(()).unwrap();
            let _ = tx.send(script(&listener, asn));
            // Keep the last session open until netban closes it.
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("fake peer listening");
        FakePeer { report: rx }
    }

    pub fn wait_for_report(&self, timeout: Duration) -> Report {
        match self.report.recv_timeout(timeout) {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => panic!("fake peer: {e}"),
            Err(e) => panic!("fake peer gave no report within {timeout:?}: {e}"),
        }
    }
}

fn read_message(s: &mut TcpStream) -> Result<Option<Message>, String> {
    let mut header = [0u8; HEADER_LEN];
    match s.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("read: {e}")),
    }
    let (len, _) = decode_header(&header).map_err(|e| e.to_string())?;
    let mut bytes = header.to_vec();
    bytes.resize(len, 0);
    s.read_exact(&mut bytes[HEADER_LEN..])
        .map_err(|e| format!("read: {e}"))?;
    message::decode(&bytes).map(Some).map_err(|e| e.to_string())
}

fn accept_open(listener: &TcpListener) -> Result<TcpStream, String> {
    let (mut s, _) = listener.accept().map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    match read_message(&mut s)? {
        Some(Message::Open(o)) if o.four_octet_as().is_some() => Ok(s),
        other => Err(format!("expected netban's OPEN, got {other:?}")),
    }
}

fn script(listener: &TcpListener, asn: u32) -> Result<Report, String> {
    let mut report = Report::default();

    // 1: garbage.
    let mut s = accept_open(listener)?;
    report.connections += 1;
    s.write_all(b"GET / HTTP/1.1\r\nHost: netban\r\n\r\n")
        .unwrap();
    while let Some(m) = read_message(&mut s)? {
        if let Message::Notification(n) = m {
            report.answer_to_garbage = Some(n);
        }
    }

    // 2: a NOTIFICATION instead of an OPEN.
    let mut s = accept_open(listener)?;
    report.connections += 1;
    let cease = Message::Notification(Notification {
        code: 6,
        subcode: 4,
        data: vec![],
    });
    s.write_all(&cease.encode()).unwrap();
    drop(s);

    // 3: a proper session.
    let mut s = accept_open(listener)?;
    report.connections += 1;
    let open = Message::Open(Open {
        version: 4,
        my_as: asn as u16,
        hold_time: 90,
        bgp_id: Ipv4Addr::new(198, 18, 0, 1),
        capabilities: vec![
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::Multiprotocol { afi: 2, safi: 1 },
            Capability::FourOctetAs(asn),
        ],
    });
    s.write_all(&open.encode()).unwrap();
    s.write_all(&Message::Keepalive.encode()).unwrap();
    while report.announced.len() < 2 {
        match read_message(&mut s)? {
            None => return Err(format!("netban closed the good session: {report:?}")),
            Some(Message::Update(u)) => {
                report
                    .announced
                    .extend(u.nlri.iter().map(|n| IpNet::V4(*n)));
                for a in u.attributes {
                    match a {
                        Attribute::MpReach { nlri, .. } => report.announced.extend(nlri),
                        Attribute::Communities(c) => report.communities = c,
                        _ => {}
                    }
                }
            }
            Some(Message::Keepalive) => {}
            Some(other) => return Err(format!("unexpected {other:?}")),
        }
    }
    // Keep reading (and so the session up) in the background until netban closes it.
    std::thread::spawn(move || while let Ok(Some(_)) = read_message(&mut s) {});
    Ok(report)
}
