//! One BGP session to one peer, run as a background task for the life of the driver.
//!
//! The task connects (active open only), exchanges OPENs, and once established announces the
//! driver's whole desired set, then follows every change of it with the withdrawals and
//! announcements that make the peer's view match, packed into as few UPDATEs as fit. It sends
//! keepalives every third of the negotiated hold time and closes the session when the peer's
//! hold timer runs out, when the peer sends a NOTIFICATION, or when it sends bytes that are
//! not BGP (each answered with the NOTIFICATION RFC 4271 asks for). After any close it waits
//! (1 s, doubling up to `connect_retry_max_secs`) and connects again; a new session starts
//! from nothing on both sides, so everything is announced again.
//!
//! Routes the peer sends are read (to keep the hold timer) and ignored without being decoded
//! (see [`Incoming`]): among them the rules and routes a router sends back to netban (FRR
//! advertises a flowspec rule it accepted back to the eBGP speaker it came from). Every write is bounded by the hold time, so a peer that stops reading
//! ends the session instead of wedging it. A hold time of 0 is refused. What the task is doing
//! is published in a [`PeerStatus`] that the driver reads for `observe` and `apply`.

use super::flowspec::{RuleShapes, SourceMatch, SAFI_FLOWSPEC};
use super::message::{
    self, code, Capability, DecodeError, Message, Notification, Open, AFI_IPV4, AFI_IPV6, AS_TRANS,
    HEADER_LEN, SAFI_UNICAST,
};
use super::socket;
use super::update::{self, RouteAttributes, ShapedPrefix};
use super::BgpConfig;
use super::PeerConfig;
use netban_core::Prefix;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How long the OPEN and KEEPALIVE exchange may take (RFC 4271 suggests a large hold time
/// while waiting for OPEN).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The first wait after a failed or closed session.
const RETRY_MIN: Duration = Duration::from_secs(1);
/// How long the NOTIFICATION that closes a session may take to leave; it is a courtesy, and a
/// peer that does not read must not hold up the close.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(1);

/// What every session should announce: the driver's desired prefixes, each with the shape of
/// its flow specification rule (mode flowspec or both), and a version that grows with each
/// change.
#[derive(Clone, Debug, Default)]
pub struct Announcement {
    pub version: u64,
    pub prefixes: BTreeMap<Prefix, SourceMatch>,
}

/// What a session is doing, published for the driver.
#[derive(Clone, Debug, Default)]
pub struct PeerStatus {
    pub established: bool,
    /// The [`Announcement::version`] whose prefixes this session has sent (while established).
    pub synced_version: u64,
    /// Why the last session ended or the last connection attempt failed.
    pub last_error: Option<SessionError>,
}

/// Why a session ended or could not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("connection lost: {0}")]
    Io(String),
    #[error("the router closed the connection")]
    Closed,
    #[error("the router sent NOTIFICATION {0}")]
    Notification(Notification),
    #[error("the router sent a malformed message: {0}")]
    Malformed(DecodeError),
    /// The peer is not configured the way netban's configuration says.
    #[error("{0}")]
    Mismatch(String),
    #[error("unexpected {0} message")]
    Unexpected(&'static str),
    #[error("hold timer expired: nothing heard from the router for {0} s")]
    HoldTimerExpired(u16),
    #[error("no OPEN/KEEPALIVE from the router within {HANDSHAKE_TIMEOUT:?}")]
    HandshakeTimeout,
    /// A write made no progress: the router stopped reading (its TCP window stayed full).
    #[error(
        "the router took no data for {0} s (it stopped reading: its TCP receive window stayed \
         full); reconnecting"
    )]
    WriteStalled(u64),
    #[error(transparent)]
    Password(#[from] super::config::PasswordFileError),
}

impl SessionError {
    /// True when retrying will not help until someone changes a configuration.
    pub fn is_config(&self) -> bool {
        match self {
            SessionError::Mismatch(_) | SessionError::Password(_) => true,
            SessionError::Notification(n) => n.code == code::OPEN,
            _ => false,
        }
    }
}

/// Everything a session task needs that does not change.
pub struct Settings {
    pub config: BgpConfig,
    pub communities: Vec<u32>,
    /// What flow specification rules match besides the source (mode flowspec or both), by
    /// default and per source.
    pub shapes: RuleShapes,
}

/// Runs the session to `peer` until `shutdown` turns true.
pub async fn run(
    settings: Arc<Settings>,
    peer: PeerConfig,
    mut desired: watch::Receiver<Arc<Announcement>>,
    status: watch::Sender<PeerStatus>,
    mut shutdown: watch::Receiver<bool>,
) {
    let addr = SocketAddr::new(peer.address, peer.port);
    let retry_max = Duration::from_secs(settings.config.connect_retry_max_secs);
    let mut wait = RETRY_MIN;
    loop {
        let mut session = Session {
            settings: &settings,
            peer: &peer,
            addr,
            status: &status,
            established: false,
        };
        let result = session.connect_and_serve(&mut desired, &mut shutdown).await;
        let was_established = session.established;
        match result {
            Ok(()) => {
                status.send_modify(|s| s.established = false);
                return;
            }
            Err(error) => {
                if was_established || error.is_config() {
                    tracing::warn!(peer = %addr, %error, "BGP session down");
                } else {
                    tracing::debug!(peer = %addr, %error, "BGP connection attempt failed");
                }
                status.send_modify(|s| {
                    s.established = false;
                    s.last_error = Some(error);
                });
            }
        }
        if was_established {
            wait = RETRY_MIN;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        wait = (wait * 2).min(retry_max);
    }
}

struct Session<'a> {
    settings: &'a Settings,
    peer: &'a PeerConfig,
    addr: SocketAddr,
    status: &'a watch::Sender<PeerStatus>,
    established: bool,
}

/// The writing half, buffered; every send is flushed by the caller when a batch is done.
///
/// Every write is bounded by `timeout` (the handshake timeout, then the negotiated hold time):
/// a router that stops reading fills its TCP window, and without a bound the session task
/// would wait forever, deaf to shutdown and never reconnecting.
struct Writer {
    out: BufWriter<OwnedWriteHalf>,
    timeout: Duration,
}

impl Writer {
    async fn send(&mut self, message: &Message) -> Result<(), SessionError> {
        let bytes = message.encode();
        let timeout = self.timeout;
        Self::bounded(timeout, self.out.write_all(&bytes)).await
    }
    async fn flush(&mut self) -> Result<(), SessionError> {
        let timeout = self.timeout;
        Self::bounded(timeout, self.out.flush()).await
    }
    async fn bounded(
        timeout: Duration,
        write: impl std::future::Future<Output = std::io::Result<()>>,
    ) -> Result<(), SessionError> {
        match tokio::time::timeout(timeout, write).await {
            Ok(result) => result.map_err(io_error),
            Err(_) => Err(SessionError::WriteStalled(timeout.as_secs())),
        }
    }
    /// Sends a NOTIFICATION and flushes within [`NOTIFY_TIMEOUT`], ignoring errors (the
    /// session is closing anyway).
    async fn notify(&mut self, n: Notification) {
        self.timeout = self.timeout.min(NOTIFY_TIMEOUT);
        let _ = self.send(&Message::Notification(n)).await;
        let _ = self.flush().await;
    }
}

fn io_error(e: std::io::Error) -> SessionError {
    SessionError::Io(e.to_string())
}

/// Aborts the reader task when the session ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A message as the session sees it. The body of an UPDATE is not decoded: netban accepts no
/// routes from its peers, so an attribute it does not know (or one a newer RFC defines, or a
/// confederation AS_PATH) must not end the session and with it every blackhole. Only the
/// header (marker, type, length up to [`message::MAX_MESSAGE_LEN`], or for an UPDATE up to
/// [`message::MAX_RECEIVED_UPDATE_LEN`]: see [`message::decode_received_header`]) is checked.
#[derive(Debug)]
enum Incoming {
    Open(Open),
    /// An UPDATE, read whole and dropped.
    Update,
    Keepalive,
    Notification(Notification),
}

impl Incoming {
    fn name(&self) -> &'static str {
        match self {
            Incoming::Open(_) => "OPEN",
            Incoming::Update => "UPDATE",
            Incoming::Notification(_) => "NOTIFICATION",
            Incoming::Keepalive => "KEEPALIVE",
        }
    }
}

/// Reads messages until the connection ends or a message does not decode; each goes to `tx`.
/// Cancel safety lives here: the session selects on the channel, never on a half-read socket.
/// Memory is bounded: one message of at most 65,535 bytes (an UPDATE; 4,096 for the others:
/// the header says how long, and a longer one is refused before its body is read) plus 64
/// queued (an UPDATE is queued without its body).
async fn read_messages(mut read: OwnedReadHalf, tx: mpsc::Sender<Result<Incoming, SessionError>>) {
    loop {
        let mut header = [0u8; HEADER_LEN];
        match read.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
            Err(e) => {
                let _ = tx.send(Err(io_error(e))).await;
                return;
            }
        }
        let result = match message::decode_received_header(&header) {
            Ok((len, kind)) => {
                let mut body = vec![0u8; len - HEADER_LEN];
                match read.read_exact(&mut body).await {
                    Ok(_) if kind == message::TYPE_UPDATE => Ok(Incoming::Update),
                    Ok(_) => message::decode_body(kind, &body)
                        .map(|m| match m {
                            Message::Open(o) => Incoming::Open(o),
                            Message::Notification(n) => Incoming::Notification(n),
                            Message::Keepalive => Incoming::Keepalive,
                            Message::Update(_) => Incoming::Update,
                        })
                        .map_err(SessionError::Malformed),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
                    Err(e) => Err(io_error(e)),
                }
            }
            Err(e) => Err(SessionError::Malformed(e)),
        };
        let failed = result.is_err();
        if tx.send(result).await.is_err() || failed {
            return;
        }
    }
}

impl<'a> Session<'a> {
    fn config(&self) -> &'a BgpConfig {
        &self.settings.config
    }

    fn is_ibgp(&self) -> bool {
        self.peer.remote_as == self.config().local_as
    }

    /// The (AFI, SAFI) pairs the mode sends, each with how to enable it on the router.
    fn families(&self) -> Vec<(u16, u8, &'static str, &'static str)> {
        let mode = self.config().mode;
        let mut out = Vec::new();
        if mode.rtbh() {
            out.push((
                AFI_IPV4,
                SAFI_UNICAST,
                "IPv4 unicast",
                "BIRD: an `ipv4` channel; FRR: `address-family ipv4 unicast`",
            ));
            out.push((AFI_IPV6, SAFI_UNICAST, "IPv6 unicast", "BIRD: an `ipv6` channel; FRR: `address-family ipv6 unicast` + `neighbor … activate`"));
        }
        if mode.flowspec() {
            out.push((AFI_IPV4, SAFI_FLOWSPEC, "IPv4 flowspec", "BIRD: a `flow4` channel; FRR: `address-family ipv4 flowspec` + `neighbor … activate`; GoBGP: afi-safi `ipv4-flowspec`"));
            out.push((AFI_IPV6, SAFI_FLOWSPEC, "IPv6 flowspec", "BIRD: a `flow6` channel; FRR: `address-family ipv6 flowspec` + `neighbor … activate`; GoBGP: afi-safi `ipv6-flowspec`"));
        }
        out
    }

    fn our_open(&self) -> Open {
        let local_as = self.config().local_as;
        let mut capabilities: Vec<Capability> = self
            .families()
            .into_iter()
            .map(|(afi, safi, _, _)| Capability::Multiprotocol { afi, safi })
            .collect();
        capabilities.push(Capability::FourOctetAs(local_as));
        Open {
            version: 4,
            my_as: u16::try_from(local_as).unwrap_or(AS_TRANS),
            hold_time: self.config().hold_time_secs,
            bgp_id: self.config().router_id,
            capabilities,
        }
    }

    /// Checks the peer's OPEN against the configuration; `Err` carries the NOTIFICATION to
    /// send and the error to report.
    fn check_open(&self, open: &Open) -> Result<(), (Notification, SessionError)> {
        let refuse = |subcode: u8, why: String| {
            Err((
                Notification {
                    code: code::OPEN,
                    subcode,
                    data: Vec::new(),
                },
                SessionError::Mismatch(why),
            ))
        };
        if open.four_octet_as().is_none() {
            return refuse(
                7,
                "the router does not announce the 4-octet AS capability (RFC 6793), which \
                 netban requires"
                    .into(),
            );
        }
        if open.asn() != self.peer.remote_as {
            return refuse(
                2,
                format!(
                    "the router says it is AS {} but remote_as is {}: fix remote_as or the \
                     router's AS",
                    open.asn(),
                    self.peer.remote_as
                ),
            );
        }
        // RFC 4271 allows 0 (no keepalives, no hold timer) and lets an implementation refuse
        // it (section 4.2). netban refuses it: without a hold timer a router that died or
        // stopped reading is never noticed, and bans look enforced while they are not.
        if matches!(open.hold_time, 0..=2) {
            return refuse(
                6,
                format!(
                    "the router proposes hold time {} s; netban needs a hold timer (3 s or \
                     more) to notice a dead router: set a hold time on the router",
                    open.hold_time
                ),
            );
        }
        if open.bgp_id == self.config().router_id {
            return refuse(
                3,
                format!(
                    "the router's BGP identifier is netban's router_id {}: give netban another",
                    open.bgp_id
                ),
            );
        }
        for (afi, safi, name, how) in self.families() {
            if !open.supports_family(afi, safi) {
                return refuse(
                    7,
                    format!("the router did not enable {name} on this session ({how})"),
                );
            }
        }
        Ok(())
    }

    /// The attributes of this session's routes; next hops default to the session's own
    /// addresses.
    fn route_attributes(&self, local: IpAddr) -> Result<RouteAttributes, SessionError> {
        let c = self.config();
        // Flow specification rules carry no next hop: without blackhole routes, a missing
        // one is never sent.
        let needed = c.mode.rtbh();
        let next_hop_v4 = match (c.next_hop_v4, local) {
            (Some(a), _) => a,
            (None, IpAddr::V4(a)) => a,
            (None, IpAddr::V6(_)) if needed => {
                return Err(SessionError::Mismatch("set next_hop_v4".into()));
            }
            (None, IpAddr::V6(_)) => std::net::Ipv4Addr::UNSPECIFIED,
        };
        let next_hop_v6 = match (c.next_hop_v6, local) {
            (Some(a), _) => a,
            (None, IpAddr::V6(a)) => a,
            (None, IpAddr::V4(_)) if needed => {
                return Err(SessionError::Mismatch("set next_hop_v6".into()));
            }
            (None, IpAddr::V4(_)) => std::net::Ipv6Addr::UNSPECIFIED,
        };
        Ok(RouteAttributes {
            as_path: if self.is_ibgp() {
                Vec::new()
            } else {
                vec![c.local_as]
            },
            local_pref: self.is_ibgp().then_some(c.local_pref),
            communities: self.settings.communities.clone(),
            next_hop_v4,
            next_hop_v6,
        })
    }

    /// One connection: `Ok` when shut down on request, `Err` when it failed or ended.
    async fn connect_and_serve(
        &mut self,
        desired: &mut watch::Receiver<Arc<Announcement>>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), SessionError> {
        let c = self.config();
        let protection = socket::Protection {
            md5_key: match &self.peer.md5_password_file {
                Some(path) => Some(super::config::read_md5_password(path)?),
                None => None,
            },
            ttl_security_hops: self.peer.ttl_security_hops,
        };
        let connect = socket::connect(
            c.netns.as_deref(),
            self.addr,
            self.peer.local_address,
            &protection,
            Duration::from_secs(c.connect_timeout_secs),
        );
        let stream = tokio::select! {
            r = connect => r.map_err(|e| SessionError::Connect(e.to_string()))?,
            _ = shutdown.changed() => return Ok(()),
        };
        let local = stream.local_addr().map_err(io_error)?.ip();
        let attrs = self.route_attributes(local)?;
        let (read, write) = stream.into_split();
        let (tx, mut rx) = mpsc::channel(64);
        let _reader = AbortOnDrop(tokio::spawn(read_messages(read, tx)));
        let mut w = Writer {
            out: BufWriter::with_capacity(64 * 1024, write),
            timeout: HANDSHAKE_TIMEOUT,
        };

        w.send(&Message::Open(self.our_open())).await?;
        w.flush().await?;
        let handshake_deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let open = match self.receive(&mut rx, &mut w, handshake_deadline).await? {
            Incoming::Open(open) => open,
            other => return Err(self.unexpected(&mut w, &other).await),
        };
        if let Err((notification, error)) = self.check_open(&open) {
            w.notify(notification).await;
            return Err(error);
        }
        let hold = open.hold_time.min(c.hold_time_secs);
        // check_open and the configuration refuse 0, so there is always a hold timer.
        w.timeout = Duration::from_secs(u64::from(hold));
        w.send(&Message::Keepalive).await?;
        w.flush().await?;
        match self.receive(&mut rx, &mut w, handshake_deadline).await? {
            Incoming::Keepalive => {}
            other => return Err(self.unexpected(&mut w, &other).await),
        }

        self.established = true;
        self.status.send_modify(|s| {
            s.established = true;
            s.synced_version = 0;
        });
        tracing::info!(peer = %self.addr, local = %local, hold, ibgp = self.is_ibgp(), "BGP session established");

        let hold_time = Duration::from_secs(u64::from(hold));
        let mut hold_deadline = Instant::now() + hold_time;
        let keepalive_every = (hold_time / 3).max(Duration::from_secs(1));
        let mut keepalive =
            tokio::time::interval_at(Instant::now() + keepalive_every, keepalive_every);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut advertised = BTreeMap::new();
        desired.mark_changed();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    w.notify(Notification { code: code::CEASE, subcode: 2, data: Vec::new() }).await;
                    return Ok(());
                }
                message = rx.recv() => match message {
                    None => return Err(SessionError::Closed),
                    Some(Err(error)) => {
                        if let SessionError::Malformed(e) = &error {
                            w.notify(e.notification()).await;
                        }
                        return Err(error);
                    }
                    Some(Ok(Incoming::Keepalive | Incoming::Update)) => {
                        hold_deadline = Instant::now() + hold_time;
                    }
                    Some(Ok(Incoming::Notification(n))) => return Err(SessionError::Notification(n)),
                    Some(Ok(other @ Incoming::Open(_))) => return Err(self.unexpected(&mut w, &other).await),
                },
                _ = tokio::time::sleep_until(hold_deadline) => {
                    w.notify(Notification { code: code::HOLD_TIMER_EXPIRED, subcode: 0, data: Vec::new() }).await;
                    return Err(SessionError::HoldTimerExpired(hold));
                }
                _ = keepalive.tick() => {
                    w.send(&Message::Keepalive).await?;
                    w.flush().await?;
                }
                changed = desired.changed() => {
                    if changed.is_err() {
                        // The driver is gone.
                        w.notify(Notification { code: code::CEASE, subcode: 2, data: Vec::new() }).await;
                        return Ok(());
                    }
                    let snapshot = Arc::clone(&desired.borrow_and_update());
                    tokio::select! {
                        sent = self.send_changes(&mut w, &mut advertised, &snapshot, &attrs) => sent?,
                        // A shutdown does not wait for a slow router to take a large batch; the
                        // connection closes mid-message, without a Cease.
                        _ = shutdown.changed() => return Ok(()),
                    }
                    let version = snapshot.version;
                    self.status.send_modify(|s| s.synced_version = version);
                }
            }
        }
    }

    /// Sends what makes the peer's view (`advertised`) equal to `desired`, all flushed at
    /// once. Each prefix is a blackhole route, a flow specification rule, or both, as the
    /// mode says. Withdrawals go first, then announcements. A rule is identified by its
    /// whole NLRI, so a prefix whose rule changed shape (another source banned it) has its
    /// old rule withdrawn and the new one announced in the same flush; its blackhole route
    /// is left alone. (Withdrawing first keeps one rule per source at the router; FRR 8.4.4's
    /// zebra crashed far more often the other way round, see docs/targets/bgp.md.)
    async fn send_changes(
        &self,
        w: &mut Writer,
        advertised: &mut BTreeMap<Prefix, SourceMatch>,
        desired: &Announcement,
        attrs: &RouteAttributes,
    ) -> Result<(), SessionError> {
        let old_rules: Vec<ShapedPrefix> = advertised
            .iter()
            .filter(|(p, shape)| desired.prefixes.get(p) != Some(shape))
            .map(|(p, shape)| (*p, shape.clone()))
            .collect();
        let new_rules: Vec<ShapedPrefix> = desired
            .prefixes
            .iter()
            .filter(|(p, shape)| advertised.get(p) != Some(shape))
            .map(|(p, shape)| (*p, shape.clone()))
            .collect();
        if old_rules.is_empty() && new_rules.is_empty() {
            return Ok(());
        }
        let gone: Vec<Prefix> = old_rules
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !desired.prefixes.contains_key(p))
            .collect();
        let new: Vec<Prefix> = new_rules
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !advertised.contains_key(p))
            .collect();
        let started = std::time::Instant::now();
        let mode = self.config().mode;
        let mut messages = Vec::new();
        if mode.rtbh() {
            messages.extend(update::withdraw(&gone));
            messages.extend(update::announce(&new, attrs));
        }
        if mode.flowspec() {
            messages.extend(update::withdraw_rules(&old_rules));
            messages.extend(update::announce_rules(&new_rules, attrs));
        }
        let updates = messages.len();
        for m in &messages {
            w.send(m).await?;
        }
        w.flush().await?;
        for (p, _) in &old_rules {
            advertised.remove(p);
        }
        advertised.extend(new_rules.iter().cloned());
        tracing::debug!(
            peer = %self.addr,
            withdrawn = gone.len(),
            announced = new.len(),
            reshaped = new_rules.len() - new.len(),
            updates,
            elapsed_us = started.elapsed().as_micros() as u64,
            "BGP UPDATEs sent"
        );
        Ok(())
    }

    /// The next message before `deadline`; a NOTIFICATION or a read error ends the session.
    async fn receive(
        &self,
        rx: &mut mpsc::Receiver<Result<Incoming, SessionError>>,
        w: &mut Writer,
        deadline: Instant,
    ) -> Result<Incoming, SessionError> {
        let message = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| SessionError::HandshakeTimeout)?;
        match message {
            None => Err(SessionError::Closed),
            Some(Err(error)) => {
                if let SessionError::Malformed(e) = &error {
                    w.notify(e.notification()).await;
                }
                Err(error)
            }
            Some(Ok(Incoming::Notification(n))) => Err(SessionError::Notification(n)),
            Some(Ok(m)) => Ok(m),
        }
    }

    /// Answers a message that does not fit the session's state with an FSM error.
    async fn unexpected(&self, w: &mut Writer, message: &Incoming) -> SessionError {
        w.notify(Notification {
            code: code::FSM,
            subcode: 0,
            data: Vec::new(),
        })
        .await;
        SessionError::Unexpected(message.name())
    }
}
