//! BGP-4 messages (RFC 4271) and the parts of their extensions netban speaks: capabilities
//! (RFC 5492) for multiprotocol IPv4/IPv6 unicast (RFC 4760) and 4-octet AS numbers (RFC 6793),
//! COMMUNITIES (RFC 1997), EXTENDED COMMUNITIES (RFC 4360) and MP_REACH_NLRI / MP_UNREACH_NLRI
//! of unicast and of flow specification rules (SAFI 133, RFC 8955/8956; the rules' own codec is
//! in [`super::flowspec`]).
//!
//! What it is for: turning a [`Message`] into bytes and bytes back into a `Message`, strictly
//! and without panicking on anything a peer sends. Decoding errors carry the NOTIFICATION
//! code and subcode RFC 4271 section 6 asks for, so the session can tell the peer why it
//! closes. What it is not: the session (see `session.rs`) or the packing of prefixes into as
//! few UPDATEs as fit (see `update.rs`). AS_PATH is always 4-octet: netban only establishes
//! sessions with peers that announce the 4-octet AS capability.

use super::flowspec::{self, Rule, SAFI_FLOWSPEC};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Size of the message header: marker (16), length (2), type (1).
pub const HEADER_LEN: usize = 19;
/// Largest message without the extended-message capability (RFC 8654, which netban does not
/// announce).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The message type of an UPDATE.
pub const TYPE_UPDATE: u8 = 2;

pub const AFI_IPV4: u16 = 1;
pub const AFI_IPV6: u16 = 2;
pub const SAFI_UNICAST: u8 = 1;

/// Capability codes.
const CAP_MULTIPROTOCOL: u8 = 1;
const CAP_ROUTE_REFRESH: u8 = 2;
const CAP_FOUR_OCTET_AS: u8 = 65;
/// The 2-octet AS sent in OPEN when the real one does not fit (RFC 6793).
pub const AS_TRANS: u16 = 23456;

/// Path attribute type codes.
const ATTR_ORIGIN: u8 = 1;
const ATTR_AS_PATH: u8 = 2;
const ATTR_NEXT_HOP: u8 = 3;
const ATTR_LOCAL_PREF: u8 = 5;
const ATTR_COMMUNITIES: u8 = 8;
const ATTR_MP_REACH: u8 = 14;
const ATTR_MP_UNREACH: u8 = 15;
const ATTR_EXTENDED_COMMUNITIES: u8 = 16;

/// Path attribute flags.
const FLAG_OPTIONAL: u8 = 0x80;
const FLAG_TRANSITIVE: u8 = 0x40;
const FLAG_EXTENDED_LENGTH: u8 = 0x10;

/// NOTIFICATION error codes (RFC 4271 section 4.5).
pub mod code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const UPDATE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
}

/// One BGP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// Always 4 when sent; checked when received.
    pub version: u8,
    /// The 2-octet "My Autonomous System" field (AS_TRANS for a 4-octet AS).
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// The speaker's AS: the 4-octet AS capability if present, else the 2-octet field.
    pub fn asn(&self) -> u32 {
        self.four_octet_as().unwrap_or(u32::from(self.my_as))
    }

    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(asn) => Some(*asn),
            _ => None,
        })
    }

    /// Whether the speaker can exchange routes of (afi, SAFI unicast). Without any
    /// multiprotocol capability a speaker does IPv4 unicast only (RFC 4760 section 8).
    pub fn supports(&self, afi: u16) -> bool {
        self.supports_family(afi, SAFI_UNICAST)
    }

    /// Whether the speaker can exchange routes of (afi, safi).
    pub fn supports_family(&self, afi: u16, safi: u8) -> bool {
        let mut any_mp = false;
        for c in &self.capabilities {
            if let Capability::Multiprotocol { afi: a, safi: s } = c {
                any_mp = true;
                if *a == afi && *s == safi {
                    return true;
                }
            }
        }
        !any_mp && afi == AFI_IPV4 && safi == SAFI_UNICAST
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    Multiprotocol {
        afi: u16,
        safi: u8,
    },
    RouteRefresh,
    FourOctetAs(u32),
    /// A capability netban does not use, kept as received.
    Other {
        code: u8,
        value: Vec<u8>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// IPv4 unicast routes withdrawn.
    pub withdrawn: Vec<Ipv4Net>,
    pub attributes: Vec<Attribute>,
    /// IPv4 unicast routes announced with `attributes`.
    pub nlri: Vec<Ipv4Net>,
}

/// ORIGIN values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AsSegment {
    Set(Vec<u32>),
    Sequence(Vec<u32>),
    /// AS_CONFED_SEQUENCE (RFC 5065): the member ASes crossed inside a confederation.
    ConfedSequence(Vec<u32>),
    /// AS_CONFED_SET (RFC 5065).
    ConfedSet(Vec<u32>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attribute {
    Origin(Origin),
    /// 4-octet AS numbers.
    AsPath(Vec<AsSegment>),
    NextHop(Ipv4Addr),
    LocalPref(u32),
    Communities(Vec<u32>),
    /// MP_REACH_NLRI for IPv4 or IPv6 unicast.
    MpReach {
        next_hop: MpNextHop,
        nlri: Vec<IpNet>,
    },
    /// MP_UNREACH_NLRI for IPv4 or IPv6 unicast.
    MpUnreach {
        afi: u16,
        withdrawn: Vec<IpNet>,
    },
    /// EXTENDED COMMUNITIES (RFC 4360): 8 octets each, type first.
    ExtendedCommunities(Vec<[u8; 8]>),
    /// MP_REACH_NLRI of flow specification rules (SAFI 133) of `afi`. RFC 8955 sends no next
    /// hop (length 0); other speakers' extensions (redirect to IP) put one here, kept as bytes.
    FlowspecReach {
        afi: u16,
        next_hop: Vec<u8>,
        rules: Vec<Rule>,
    },
    /// MP_UNREACH_NLRI of flow specification rules of `afi`.
    FlowspecUnreach {
        afi: u16,
        rules: Vec<Rule>,
    },
    /// Anything else (including MP attributes of other address families), kept as received.
    Other {
        flags: u8,
        code: u8,
        value: Vec<u8>,
    },
}

/// The next hop of an MP_REACH_NLRI; its family is the attribute's AFI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MpNextHop {
    V4(Ipv4Addr),
    /// A global address, and optionally a link-local one (RFC 2545).
    V6 {
        global: Ipv6Addr,
        link_local: Option<Ipv6Addr>,
    },
}

impl MpNextHop {
    fn afi(&self) -> u16 {
        match self {
            MpNextHop::V4(_) => AFI_IPV4,
            MpNextHop::V6 { .. } => AFI_IPV6,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match (self.code, self.subcode) {
            (1, _) => "message header error",
            (2, 2) => "OPEN error: bad peer AS (check local_as and the router's neighbor AS)",
            (2, 3) => "OPEN error: bad BGP identifier (check router_id)",
            (2, 6) => "OPEN error: unacceptable hold time",
            (2, 7) => "OPEN error: unsupported capability",
            (2, _) => "OPEN error",
            (3, _) => "UPDATE error",
            (4, _) => "hold timer expired",
            (5, _) => "finite state machine error",
            (6, 2) => "cease: administrative shutdown",
            (6, 3) => "cease: peer de-configured",
            (6, 4) => "cease: administrative reset",
            (6, 5) => "cease: connection rejected (is this address configured as a neighbor?)",
            (6, 7) => "cease: connection collision resolution",
            (6, _) => "cease",
            _ => "unknown error",
        };
        write!(f, "{what} ({}/{})", self.code, self.subcode)
    }
}

/// Why bytes are not a valid message, with the NOTIFICATION to send back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (NOTIFICATION {code}/{subcode})")]
pub struct DecodeError {
    pub code: u8,
    pub subcode: u8,
    pub reason: String,
}

impl DecodeError {
    fn new(code: u8, subcode: u8, reason: impl Into<String>) -> DecodeError {
        DecodeError {
            code,
            subcode,
            reason: reason.into(),
        }
    }

    /// The NOTIFICATION telling the peer about this error.
    pub fn notification(&self) -> Notification {
        Notification {
            code: self.code,
            subcode: self.subcode,
            data: Vec::new(),
        }
    }
}

fn header_error(subcode: u8, reason: impl Into<String>) -> DecodeError {
    DecodeError::new(code::MESSAGE_HEADER, subcode, reason)
}
fn open_error(reason: impl Into<String>) -> DecodeError {
    // Subcode 0: unspecific (RFC 4271 section 6.2 allows it).
    DecodeError::new(code::OPEN, 0, reason)
}
fn update_error(subcode: u8, reason: impl Into<String>) -> DecodeError {
    DecodeError::new(code::UPDATE, subcode, reason)
}

// ----------------------------------------------------------------------------------------
// Encoding
// ----------------------------------------------------------------------------------------

impl Message {
    fn type_code(&self) -> u8 {
        match self {
            Message::Open(_) => 1,
            Message::Update(_) => 2,
            Message::Notification(_) => 3,
            Message::Keepalive => 4,
        }
    }

    /// The message as bytes, header included. Callers keep messages within
    /// [`MAX_MESSAGE_LEN`] (the UPDATE packer does); a longer one is still encoded, and
    /// refused by [`Message::encode_checked`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&[0xff; 16]);
        out.extend_from_slice(&[0, 0]);
        out.push(self.type_code());
        match self {
            Message::Open(open) => encode_open(open, &mut out),
            Message::Update(update) => encode_update(update, &mut out),
            Message::Notification(n) => {
                out.push(n.code);
                out.push(n.subcode);
                out.extend_from_slice(&n.data);
            }
            Message::Keepalive => {}
        }
        let len = u16::try_from(out.len()).unwrap_or(u16::MAX);
        out[16..18].copy_from_slice(&len.to_be_bytes());
        out
    }

    /// Like [`Message::encode`], but `None` if the message exceeds [`MAX_MESSAGE_LEN`].
    pub fn encode_checked(&self) -> Option<Vec<u8>> {
        let bytes = self.encode();
        (bytes.len() <= MAX_MESSAGE_LEN).then_some(bytes)
    }
}

fn encode_open(open: &Open, out: &mut Vec<u8>) {
    out.push(open.version);
    out.extend_from_slice(&open.my_as.to_be_bytes());
    out.extend_from_slice(&open.hold_time.to_be_bytes());
    out.extend_from_slice(&open.bgp_id.octets());
    let mut caps = Vec::new();
    for cap in &open.capabilities {
        let (code, value) = match cap {
            Capability::Multiprotocol { afi, safi } => {
                let mut v = afi.to_be_bytes().to_vec();
                v.extend_from_slice(&[0, *safi]);
                (CAP_MULTIPROTOCOL, v)
            }
            Capability::RouteRefresh => (CAP_ROUTE_REFRESH, Vec::new()),
            Capability::FourOctetAs(asn) => (CAP_FOUR_OCTET_AS, asn.to_be_bytes().to_vec()),
            Capability::Other { code, value } => (*code, value.clone()),
        };
        caps.push(code);
        caps.push(value.len() as u8);
        caps.extend_from_slice(&value);
    }
    if caps.is_empty() {
        out.push(0);
    } else {
        // One optional parameter of type 2 (capabilities) holding them all.
        out.push((caps.len() + 2) as u8);
        out.push(2);
        out.push(caps.len() as u8);
        out.extend_from_slice(&caps);
    }
}

fn encode_update(update: &Update, out: &mut Vec<u8>) {
    let mut withdrawn = Vec::new();
    for net in &update.withdrawn {
        encode_prefix(&IpNet::V4(*net), &mut withdrawn);
    }
    out.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    out.extend_from_slice(&withdrawn);
    let mut attrs = Vec::new();
    for attr in &update.attributes {
        encode_attribute(attr, &mut attrs);
    }
    out.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    out.extend_from_slice(&attrs);
    for net in &update.nlri {
        encode_prefix(&IpNet::V4(*net), out);
    }
}

/// Length octet plus the significant octets of the network address.
pub fn encode_prefix(net: &IpNet, out: &mut Vec<u8>) {
    let len = net.prefix_len();
    out.push(len);
    let octets = usize::from(len).div_ceil(8);
    match net.trunc().addr() {
        std::net::IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..octets]),
        std::net::IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..octets]),
    }
}

/// Encoded size of a prefix in NLRI or withdrawn routes.
pub fn prefix_len_on_wire(net: &IpNet) -> usize {
    1 + usize::from(net.prefix_len()).div_ceil(8)
}

fn encode_attribute(attr: &Attribute, out: &mut Vec<u8>) {
    let mut value = Vec::new();
    let (flags, code) = match attr {
        Attribute::Origin(o) => {
            value.push(*o as u8);
            (FLAG_TRANSITIVE, ATTR_ORIGIN)
        }
        Attribute::AsPath(segments) => {
            for seg in segments {
                let (kind, asns) = match seg {
                    AsSegment::Set(a) => (1, a),
                    AsSegment::Sequence(a) => (2, a),
                    AsSegment::ConfedSequence(a) => (3, a),
                    AsSegment::ConfedSet(a) => (4, a),
                };
                value.push(kind);
                value.push(asns.len() as u8);
                for asn in asns {
                    value.extend_from_slice(&asn.to_be_bytes());
                }
            }
            (FLAG_TRANSITIVE, ATTR_AS_PATH)
        }
        Attribute::NextHop(a) => {
            value.extend_from_slice(&a.octets());
            (FLAG_TRANSITIVE, ATTR_NEXT_HOP)
        }
        Attribute::LocalPref(v) => {
            value.extend_from_slice(&v.to_be_bytes());
            (FLAG_TRANSITIVE, ATTR_LOCAL_PREF)
        }
        Attribute::Communities(list) => {
            for c in list {
                value.extend_from_slice(&c.to_be_bytes());
            }
            (FLAG_OPTIONAL | FLAG_TRANSITIVE, ATTR_COMMUNITIES)
        }
        Attribute::MpReach { next_hop, nlri } => {
            value.extend_from_slice(&next_hop.afi().to_be_bytes());
            value.push(SAFI_UNICAST);
            match next_hop {
                MpNextHop::V4(a) => {
                    value.push(4);
                    value.extend_from_slice(&a.octets());
                }
                MpNextHop::V6 { global, link_local } => {
                    value.push(if link_local.is_some() { 32 } else { 16 });
                    value.extend_from_slice(&global.octets());
                    if let Some(ll) = link_local {
                        value.extend_from_slice(&ll.octets());
                    }
                }
            }
            value.push(0); // reserved
            for net in nlri {
                encode_prefix(net, &mut value);
            }
            (FLAG_OPTIONAL | FLAG_EXTENDED_LENGTH, ATTR_MP_REACH)
        }
        Attribute::MpUnreach { afi, withdrawn } => {
            value.extend_from_slice(&afi.to_be_bytes());
            value.push(SAFI_UNICAST);
            for net in withdrawn {
                encode_prefix(net, &mut value);
            }
            (FLAG_OPTIONAL | FLAG_EXTENDED_LENGTH, ATTR_MP_UNREACH)
        }
        Attribute::ExtendedCommunities(list) => {
            for c in list {
                value.extend_from_slice(c);
            }
            (FLAG_OPTIONAL | FLAG_TRANSITIVE, ATTR_EXTENDED_COMMUNITIES)
        }
        // The flowspec MP attributes take the one-octet length when they fit in it, as GoBGP
        // and ExaBGP send them (the flowspec packer in `update.rs` allows for either).
        Attribute::FlowspecReach {
            afi,
            next_hop,
            rules,
        } => {
            value.extend_from_slice(&afi.to_be_bytes());
            value.push(SAFI_FLOWSPEC);
            value.push(next_hop.len() as u8);
            value.extend_from_slice(next_hop);
            value.push(0); // reserved
            for rule in rules {
                rule.encode(&mut value);
            }
            (FLAG_OPTIONAL, ATTR_MP_REACH)
        }
        Attribute::FlowspecUnreach { afi, rules } => {
            value.extend_from_slice(&afi.to_be_bytes());
            value.push(SAFI_FLOWSPEC);
            for rule in rules {
                rule.encode(&mut value);
            }
            (FLAG_OPTIONAL, ATTR_MP_UNREACH)
        }
        Attribute::Other {
            flags,
            code,
            value: v,
        } => {
            value.extend_from_slice(v);
            (*flags & !FLAG_EXTENDED_LENGTH, *code)
        }
    };
    // The MP attributes always use the 2-octet length, so a packer's size arithmetic is
    // linear; others only when they need it.
    let extended = flags & FLAG_EXTENDED_LENGTH != 0 || value.len() > 255;
    if extended {
        out.push(flags | FLAG_EXTENDED_LENGTH);
        out.push(code);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        out.push(flags);
        out.push(code);
        out.push(value.len() as u8);
    }
    out.extend_from_slice(&value);
}

// ----------------------------------------------------------------------------------------
// Decoding
// ----------------------------------------------------------------------------------------

/// Checks a message header; returns the whole message length (header included) and type.
pub fn decode_header(header: &[u8; HEADER_LEN]) -> Result<(usize, u8), DecodeError> {
    check_header(header, MAX_MESSAGE_LEN)
}

/// The longest UPDATE a session reads: the most the length field can say.
pub const MAX_RECEIVED_UPDATE_LEN: usize = u16::MAX as usize;

/// [`decode_header`] for what a session reads from its peer: an UPDATE may be up to
/// [`MAX_RECEIVED_UPDATE_LEN`] bytes. netban drops received UPDATEs without decoding them, and
/// FRR 8.4.4 echoing 10,000 flowspec rules back sent a 4,100-byte UPDATE although no
/// extended message capability (RFC 8654) was negotiated: refusing it (RFC 4271's Bad
/// Message Length) reset the session, and with it every ban, at each echo. OPEN and
/// NOTIFICATION, which netban decodes, keep the 4,096-byte limit.
pub fn decode_received_header(header: &[u8; HEADER_LEN]) -> Result<(usize, u8), DecodeError> {
    check_header(header, MAX_RECEIVED_UPDATE_LEN)
}

fn check_header(header: &[u8; HEADER_LEN], update_max: usize) -> Result<(usize, u8), DecodeError> {
    if header[..16].iter().any(|b| *b != 0xff) {
        return Err(header_error(1, "connection not synchronised: bad marker"));
    }
    let len = usize::from(u16::from_be_bytes([header[16], header[17]]));
    let kind = header[18];
    let (min, max) = match kind {
        1 => (29, MAX_MESSAGE_LEN),
        2 => (23, update_max),
        3 => (21, MAX_MESSAGE_LEN),
        4 => (19, 19),
        _ => return Err(header_error(3, format!("bad message type {kind}"))),
    };
    if len < min || len > max {
        return Err(header_error(
            2,
            format!("bad length {len} for message type {kind}"),
        ));
    }
    Ok((len, kind))
}

/// Decodes one whole message (header included).
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let header: &[u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| header_error(2, "shorter than a header"))?;
    let (len, kind) = decode_header(header)?;
    if bytes.len() != len {
        return Err(header_error(
            2,
            format!("length field {len} but {} bytes", bytes.len()),
        ));
    }
    decode_body(kind, &bytes[HEADER_LEN..])
}

/// Decodes a message body of type `kind` (header already checked).
pub fn decode_body(kind: u8, body: &[u8]) -> Result<Message, DecodeError> {
    match kind {
        1 => decode_open(body).map(Message::Open),
        2 => decode_update(body).map(Message::Update),
        3 => {
            let mut r = Reader::new(body);
            let code = r
                .u8()
                .ok_or_else(|| header_error(2, "short NOTIFICATION"))?;
            let subcode = r
                .u8()
                .ok_or_else(|| header_error(2, "short NOTIFICATION"))?;
            Ok(Message::Notification(Notification {
                code,
                subcode,
                data: r.rest().to_vec(),
            }))
        }
        4 if body.is_empty() => Ok(Message::Keepalive),
        4 => Err(header_error(2, "KEEPALIVE with a body")),
        _ => Err(header_error(3, format!("bad message type {kind}"))),
    }
}

/// A bounds-checked cursor: every read returns `None` past the end instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

fn decode_open(body: &[u8]) -> Result<Open, DecodeError> {
    let mut r = Reader::new(body);
    let short = || open_error("short OPEN");
    let version = r.u8().ok_or_else(short)?;
    if version != 4 {
        return Err(DecodeError::new(
            code::OPEN,
            1,
            format!("unsupported BGP version {version}"),
        ));
    }
    let my_as = r.u16().ok_or_else(short)?;
    let hold_time = r.u16().ok_or_else(short)?;
    let id = r.take(4).ok_or_else(short)?;
    let bgp_id = Ipv4Addr::new(id[0], id[1], id[2], id[3]);
    let params_len = usize::from(r.u8().ok_or_else(short)?);
    let params = r.take(params_len).ok_or_else(short)?;
    if !r.is_empty() {
        return Err(open_error("bytes after the optional parameters"));
    }
    let mut capabilities = Vec::new();
    let mut p = Reader::new(params);
    while !p.is_empty() {
        let kind = p.u8().ok_or_else(short)?;
        let len = usize::from(p.u8().ok_or_else(short)?);
        let value = p.take(len).ok_or_else(short)?;
        if kind != 2 {
            // Only capabilities (type 2) are defined today; others are refused per RFC 4271.
            return Err(DecodeError::new(
                code::OPEN,
                4,
                format!("unsupported optional parameter {kind}"),
            ));
        }
        let mut c = Reader::new(value);
        while !c.is_empty() {
            let code = c.u8().ok_or_else(short)?;
            let len = usize::from(c.u8().ok_or_else(short)?);
            let value = c.take(len).ok_or_else(short)?;
            capabilities.push(decode_capability(code, value)?);
        }
    }
    Ok(Open {
        version,
        my_as,
        hold_time,
        bgp_id,
        capabilities,
    })
}

fn decode_capability(code: u8, value: &[u8]) -> Result<Capability, DecodeError> {
    let bad = || open_error(format!("malformed capability {code}"));
    Ok(match code {
        CAP_MULTIPROTOCOL => {
            let mut r = Reader::new(value);
            let afi = r.u16().ok_or_else(bad)?;
            let _reserved = r.u8().ok_or_else(bad)?;
            let safi = r.u8().ok_or_else(bad)?;
            if !r.is_empty() {
                return Err(bad());
            }
            Capability::Multiprotocol { afi, safi }
        }
        CAP_ROUTE_REFRESH if value.is_empty() => Capability::RouteRefresh,
        CAP_FOUR_OCTET_AS => {
            let mut r = Reader::new(value);
            let asn = r.u32().ok_or_else(bad)?;
            if !r.is_empty() {
                return Err(bad());
            }
            Capability::FourOctetAs(asn)
        }
        _ => Capability::Other {
            code,
            value: value.to_vec(),
        },
    })
}

fn decode_update(body: &[u8]) -> Result<Update, DecodeError> {
    let mut r = Reader::new(body);
    let malformed = |what: &str| update_error(1, format!("malformed attribute list: {what}"));
    let withdrawn_len = usize::from(r.u16().ok_or_else(|| malformed("short"))?);
    let withdrawn_bytes = r
        .take(withdrawn_len)
        .ok_or_else(|| malformed("withdrawn routes length"))?;
    let withdrawn = decode_prefixes(AFI_IPV4, withdrawn_bytes)?
        .into_iter()
        .filter_map(v4)
        .collect();
    let attrs_len = usize::from(r.u16().ok_or_else(|| malformed("short"))?);
    let attrs_bytes = r
        .take(attrs_len)
        .ok_or_else(|| malformed("total path attribute length"))?;
    let nlri = decode_prefixes(AFI_IPV4, r.rest())?
        .into_iter()
        .filter_map(v4)
        .collect();
    let mut attributes = Vec::new();
    let mut a = Reader::new(attrs_bytes);
    while !a.is_empty() {
        let flags = a.u8().ok_or_else(|| malformed("short attribute"))?;
        let code = a.u8().ok_or_else(|| malformed("short attribute"))?;
        let len = if flags & FLAG_EXTENDED_LENGTH != 0 {
            usize::from(a.u16().ok_or_else(|| malformed("short attribute"))?)
        } else {
            usize::from(a.u8().ok_or_else(|| malformed("short attribute"))?)
        };
        let value = a
            .take(len)
            .ok_or_else(|| update_error(5, format!("attribute {code} longer than the list")))?;
        attributes.push(decode_attribute(flags, code, value)?);
    }
    Ok(Update {
        withdrawn,
        attributes,
        nlri,
    })
}

fn v4(net: IpNet) -> Option<Ipv4Net> {
    match net {
        IpNet::V4(n) => Some(n),
        IpNet::V6(_) => None,
    }
}

fn decode_attribute(flags: u8, code: u8, value: &[u8]) -> Result<Attribute, DecodeError> {
    // The extended-length bit is framing, not meaning: the encoder sets it where needed.
    let flags = flags & !FLAG_EXTENDED_LENGTH;
    let length_error = || update_error(5, format!("attribute {code} has a bad length"));
    let mut r = Reader::new(value);
    let attr = match code {
        ATTR_ORIGIN => {
            let o = match r.u8().ok_or_else(length_error)? {
                0 => Origin::Igp,
                1 => Origin::Egp,
                2 => Origin::Incomplete,
                other => return Err(update_error(6, format!("invalid ORIGIN {other}"))),
            };
            Attribute::Origin(o)
        }
        ATTR_AS_PATH => {
            let mut segments = Vec::new();
            while !r.is_empty() {
                let bad = || update_error(11, "malformed AS_PATH");
                let kind = r.u8().ok_or_else(bad)?;
                let count = usize::from(r.u8().ok_or_else(bad)?);
                let mut asns = Vec::with_capacity(count);
                for _ in 0..count {
                    asns.push(r.u32().ok_or_else(bad)?);
                }
                segments.push(match kind {
                    1 => AsSegment::Set(asns),
                    2 => AsSegment::Sequence(asns),
                    3 => AsSegment::ConfedSequence(asns),
                    4 => AsSegment::ConfedSet(asns),
                    _ => return Err(bad()),
                });
            }
            Attribute::AsPath(segments)
        }
        ATTR_NEXT_HOP => {
            let b = r.take(4).ok_or_else(length_error)?;
            Attribute::NextHop(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        }
        ATTR_LOCAL_PREF => Attribute::LocalPref(r.u32().ok_or_else(length_error)?),
        ATTR_COMMUNITIES => {
            let chunks = r.rest().chunks_exact(4);
            if !chunks.remainder().is_empty() {
                return Err(length_error());
            }
            Attribute::Communities(
                chunks
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            )
        }
        ATTR_EXTENDED_COMMUNITIES => {
            let chunks = r.rest().chunks_exact(8);
            if !chunks.remainder().is_empty() {
                return Err(length_error());
            }
            Attribute::ExtendedCommunities(
                chunks
                    .map(|b| <[u8; 8]>::try_from(b).unwrap_or_default())
                    .collect(),
            )
        }
        ATTR_MP_REACH | ATTR_MP_UNREACH => {
            let bad = || update_error(9, format!("malformed MP attribute {code}"));
            let afi = r.u16().ok_or_else(bad)?;
            let safi = r.u8().ok_or_else(bad)?;
            if matches!(afi, AFI_IPV4 | AFI_IPV6) && safi == SAFI_FLOWSPEC {
                return decode_flowspec(code, afi, &mut r);
            }
            if !matches!(afi, AFI_IPV4 | AFI_IPV6) || safi != SAFI_UNICAST {
                return Ok(Attribute::Other {
                    flags,
                    code,
                    value: value.to_vec(),
                });
            }
            if code == ATTR_MP_UNREACH {
                let withdrawn = decode_prefixes(afi, r.rest())?;
                return Ok(Attribute::MpUnreach { afi, withdrawn });
            }
            let nh_len = usize::from(r.u8().ok_or_else(bad)?);
            let nh = r.take(nh_len).ok_or_else(bad)?;
            let next_hop = match (afi, nh_len) {
                (AFI_IPV4, 4) => MpNextHop::V4(Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3])),
                (AFI_IPV6, 16) => MpNextHop::V6 {
                    global: v6_from(&nh[..16]),
                    link_local: None,
                },
                (AFI_IPV6, 32) => MpNextHop::V6 {
                    global: v6_from(&nh[..16]),
                    link_local: Some(v6_from(&nh[16..32])),
                },
                _ => return Err(bad()),
            };
            let _reserved = r.u8().ok_or_else(bad)?;
            let nlri = decode_prefixes(afi, r.rest())?;
            Attribute::MpReach { next_hop, nlri }
        }
        _ => {
            return Ok(Attribute::Other {
                flags,
                code,
                value: value.to_vec(),
            })
        }
    };
    if !r.is_empty() {
        return Err(length_error());
    }
    Ok(attr)
}

/// The rest of an MP_REACH_NLRI (`code` 14) or MP_UNREACH_NLRI (15) of SAFI 133, after its
/// AFI and SAFI.
fn decode_flowspec(code: u8, afi: u16, r: &mut Reader<'_>) -> Result<Attribute, DecodeError> {
    let bad = || update_error(9, format!("malformed MP attribute {code}"));
    let rules = |bytes: &[u8]| {
        flowspec::decode_rules(afi == AFI_IPV6, bytes)
            .map_err(|e| update_error(10, format!("invalid flow specification NLRI: {e}")))
    };
    if code == ATTR_MP_UNREACH {
        return Ok(Attribute::FlowspecUnreach {
            afi,
            rules: rules(r.rest())?,
        });
    }
    let nh_len = usize::from(r.u8().ok_or_else(bad)?);
    let next_hop = r.take(nh_len).ok_or_else(bad)?.to_vec();
    let _reserved = r.u8().ok_or_else(bad)?;
    Ok(Attribute::FlowspecReach {
        afi,
        next_hop,
        rules: rules(r.rest())?,
    })
}

fn v6_from(b: &[u8]) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(b);
    Ipv6Addr::from(octets)
}

/// Decodes a run of (length, prefix) pairs of one family. Host bits beyond the length are
/// cleared.
pub fn decode_prefixes(afi: u16, bytes: &[u8]) -> Result<Vec<IpNet>, DecodeError> {
    let max = if afi == AFI_IPV4 { 32 } else { 128 };
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    let bad = || update_error(10, "invalid network field");
    while !r.is_empty() {
        let len = r.u8().ok_or_else(bad)?;
        if len > max {
            return Err(bad());
        }
        let octets = r.take(usize::from(len).div_ceil(8)).ok_or_else(bad)?;
        let net = if afi == AFI_IPV4 {
            let mut a = [0u8; 4];
            a[..octets.len()].copy_from_slice(octets);
            IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(a), len)
                    .map_err(|_| bad())?
                    .trunc(),
            )
        } else {
            let mut a = [0u8; 16];
            a[..octets.len()].copy_from_slice(octets);
            IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from(a), len)
                    .map_err(|_| bad())?
                    .trunc(),
            )
        };
        out.push(net);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn open() -> Open {
        Open {
            version: 4,
            my_as: AS_TRANS,
            hold_time: 90,
            bgp_id: Ipv4Addr::new(198, 18, 0, 2),
            capabilities: vec![
                Capability::Multiprotocol {
                    afi: AFI_IPV4,
                    safi: SAFI_UNICAST,
                },
                Capability::Multiprotocol {
                    afi: AFI_IPV6,
                    safi: SAFI_UNICAST,
                },
                Capability::FourOctetAs(4_200_000_001),
            ],
        }
    }

    #[test]
    fn received_updates_may_be_longer_than_4096_bytes() {
        let header = |len: u16, kind: u8| {
            let mut h = [0xffu8; HEADER_LEN];
            h[16..18].copy_from_slice(&len.to_be_bytes());
            h[18] = kind;
            h
        };
        // FRR 8.4.4 sent netban a 4,100-byte UPDATE (no extended messages negotiated).
        assert!(decode_header(&header(4100, TYPE_UPDATE)).is_err());
        assert_eq!(
            decode_received_header(&header(4100, TYPE_UPDATE)),
            Ok((4100, TYPE_UPDATE))
        );
        assert_eq!(
            decode_received_header(&header(u16::MAX, TYPE_UPDATE)),
            Ok((65_535, TYPE_UPDATE))
        );
        // What netban decodes keeps the limit; a short UPDATE is still malformed.
        for (len, kind) in [(4100, 1), (4100, 3), (22, TYPE_UPDATE)] {
            assert!(
                decode_received_header(&header(len, kind)).is_err(),
                "{len} {kind}"
            );
        }
    }
    #[test]
    fn keepalive_is_the_bare_header() {
        let bytes = Message::Keepalive.encode();
        assert_eq!(bytes.len(), 19);
        assert_eq!(&bytes[16..], &[0, 19, 4]);
        assert_eq!(decode(&bytes).unwrap(), Message::Keepalive);
    }

    #[test]
    fn open_matches_the_rfc_layout() {
        let bytes = Message::Open(open()).encode();
        // Header, version 4, AS_TRANS, hold 90, id, 1 parameter of 3 capabilities.
        assert_eq!(bytes[18], 1);
        assert_eq!(&bytes[19..24], &[4, 0x5b, 0xa0, 0, 90]);
        assert_eq!(&bytes[24..28], &[198, 18, 0, 2]);
        let caps = [
            1, 4, 0, 1, 0, 1, // MP IPv4 unicast
            1, 4, 0, 2, 0, 1, // MP IPv6 unicast
            65, 4, 0xfa, 0x56, 0xea, 0x01, // 4-octet AS 4200000001
        ];
        assert_eq!(bytes[28] as usize, caps.len() + 2);
        assert_eq!(&bytes[29..31], &[2, caps.len() as u8]);
        assert_eq!(&bytes[31..], &caps);
        let back = decode(&bytes).unwrap();
        assert_eq!(back, Message::Open(open()));
        let Message::Open(o) = back else { panic!() };
        assert_eq!(o.asn(), 4_200_000_001);
        assert!(o.supports(AFI_IPV6));
    }

    #[test]
    fn flowspec_capabilities_are_read_as_exabgp_sends_them() {
        // ExaBGP's OPEN capabilities for IPv4 and IPv6 flowspec (field notes, section 1b).
        let caps = [
            1, 4, 0, 1, 0, 0x85, 1, 4, 0, 2, 0, 0x85, 65, 4, 0, 0, 0xfd, 0xe8,
        ];
        let mut body = vec![4, 0xfd, 0xe8, 0, 90, 198, 18, 0, 1];
        body.extend_from_slice(&[caps.len() as u8 + 2, 2, caps.len() as u8]);
        body.extend_from_slice(&caps);
        let Message::Open(o) = decode_body(1, &body).unwrap() else {
            panic!()
        };
        assert!(o.supports_family(AFI_IPV4, SAFI_FLOWSPEC));
        assert!(o.supports_family(AFI_IPV6, SAFI_FLOWSPEC));
        assert!(!o.supports(AFI_IPV4));
        let plain = Open {
            capabilities: vec![Capability::FourOctetAs(65001)],
            ..open()
        };
        assert!(!plain.supports_family(AFI_IPV4, SAFI_FLOWSPEC));
    }

    #[test]
    fn a_malformed_flowspec_nlri_is_an_invalid_network_field() {
        // MP_UNREACH_NLRI AFI 1 SAFI 133 with a rule whose components are out of order.
        let attr = [0x80, 15, 10, 0, 1, 0x85, 6, 3, 0x81, 6, 2, 0x20, 1];
        let mut body = vec![0, 0, 0, attr.len() as u8];
        body.extend_from_slice(&attr);
        let err = decode_body(2, &body).unwrap_err();
        assert_eq!((err.code, err.subcode), (code::UPDATE, 10), "{err}");
        assert!(err.reason.contains("flow specification"), "{err}");
    }

    #[test]
    fn a_speaker_without_mp_capabilities_does_ipv4_only() {
        let o = Open {
            capabilities: vec![Capability::FourOctetAs(65001)],
            ..open()
        };
        assert!(o.supports(AFI_IPV4));
        assert!(!o.supports(AFI_IPV6));
    }

    #[test]
    fn update_with_communities_and_mp_reach_round_trips() {
        let update = Update {
            withdrawn: vec!["203.0.113.9/32".parse().unwrap()],
            attributes: vec![
                Attribute::Origin(Origin::Igp),
                Attribute::AsPath(vec![AsSegment::Sequence(vec![65001])]),
                Attribute::NextHop(Ipv4Addr::new(198, 18, 0, 2)),
                Attribute::Communities(vec![0xffff_029a, 0xffff_ff01]),
                Attribute::MpReach {
                    next_hop: MpNextHop::V6 {
                        global: "2001:db8:ff::2".parse().unwrap(),
                        link_local: None,
                    },
                    nlri: vec!["2001:db8:a::7/128".parse().unwrap()],
                },
                Attribute::MpUnreach {
                    afi: AFI_IPV6,
                    withdrawn: vec!["2001:db8:a::/64".parse().unwrap()],
                },
            ],
            nlri: vec![
                "203.0.113.7/32".parse().unwrap(),
                "203.0.113.0/25".parse().unwrap(),
                "0.0.0.0/0".parse().unwrap(),
            ],
        };
        let bytes = Message::Update(update.clone()).encode();
        assert_eq!(decode(&bytes).unwrap(), Message::Update(update));
        // The COMMUNITIES attribute: optional transitive, type 8, 8 bytes, 65535:666 65535:65281.
        let communities = [0xc0, 8, 8, 0xff, 0xff, 0x02, 0x9a, 0xff, 0xff, 0xff, 0x01];
        assert!(bytes.windows(communities.len()).any(|w| w == communities));
    }

    #[test]
    fn garbage_gets_the_right_notification() {
        let mut bytes = Message::Keepalive.encode();
        bytes[3] = 0;
        assert_eq!(decode(&bytes).unwrap_err().code, code::MESSAGE_HEADER);
        assert_eq!(decode(&bytes).unwrap_err().subcode, 1);
        let mut long_keepalive = Message::Keepalive.encode();
        long_keepalive[17] = 20;
        long_keepalive.push(0);
        assert_eq!(decode(&long_keepalive).unwrap_err().subcode, 2);
        let mut bad_type = Message::Keepalive.encode();
        bad_type[18] = 9;
        assert_eq!(decode(&bad_type).unwrap_err().subcode, 3);
        // An UPDATE whose attribute claims more bytes than there are.
        let body = [0, 0, 0, 4, 0x40, 1, 9, 0];
        let err = decode_body(2, &body).unwrap_err();
        assert_eq!((err.code, err.subcode), (code::UPDATE, 5));
        // A /33.
        let err = decode_body(2, &[0, 0, 0, 0, 33, 1, 2, 3, 4, 5]).unwrap_err();
        assert_eq!((err.code, err.subcode), (code::UPDATE, 10));
    }

    #[test]
    fn confederation_segments_round_trip() {
        let update = Message::Update(Update {
            attributes: vec![
                Attribute::Origin(Origin::Igp),
                Attribute::AsPath(vec![
                    AsSegment::ConfedSequence(vec![65000, 65002]),
                    AsSegment::ConfedSet(vec![65003]),
                    AsSegment::Sequence(vec![64999]),
                ]),
                Attribute::NextHop(Ipv4Addr::new(198, 18, 0, 1)),
            ],
            nlri: vec!["10.99.0.0/24".parse().unwrap()],
            ..Update::default()
        });
        assert_eq!(decode(&update.encode()).unwrap(), update);
    }

    #[test]
    fn notification_explains_itself() {
        let n = Notification {
            code: 2,
            subcode: 2,
            data: vec![],
        };
        assert!(n.to_string().contains("bad peer AS"), "{n}");
    }

    fn net_strategy() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<u32>(), 0u8..=32)
                .prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())),
            (any::<u128>(), 0u8..=128)
                .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc())),
        ]
    }

    fn v4_strategy() -> impl Strategy<Value = Ipv4Net> {
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())
    }

    fn v6_only(nets: Vec<IpNet>) -> Vec<IpNet> {
        nets.into_iter()
            .filter(|n| matches!(n, IpNet::V6(_)))
            .collect()
    }

    fn attribute_strategy() -> impl Strategy<Value = Attribute> {
        prop_oneof![
            Just(Attribute::Origin(Origin::Igp)),
            Just(Attribute::Origin(Origin::Incomplete)),
            proptest::collection::vec(any::<u32>(), 0..5)
                .prop_map(|a| Attribute::AsPath(vec![AsSegment::Sequence(a)])),
            any::<u32>().prop_map(|a| Attribute::NextHop(Ipv4Addr::from(a))),
            any::<u32>().prop_map(Attribute::LocalPref),
            proptest::collection::vec(any::<u32>(), 0..10).prop_map(Attribute::Communities),
            (
                any::<u128>(),
                proptest::collection::vec(net_strategy(), 0..20)
            )
                .prop_map(|(a, nlri)| Attribute::MpReach {
                    next_hop: MpNextHop::V6 {
                        global: Ipv6Addr::from(a),
                        link_local: None
                    },
                    nlri: v6_only(nlri),
                }),
            proptest::collection::vec(net_strategy(), 0..20).prop_map(|w| Attribute::MpUnreach {
                afi: AFI_IPV6,
                withdrawn: v6_only(w),
            }),
            proptest::collection::vec(any::<[u8; 8]>(), 0..6)
                .prop_map(Attribute::ExtendedCommunities),
            (
                any::<bool>(),
                proptest::collection::vec(net_strategy(), 1..20),
                proptest::option::of(any::<u8>()),
                proptest::collection::vec(1u16.., 0..4),
            )
                .prop_map(|(reach, nets, protocol, ports)| {
                    let matcher = flowspec::SourceMatch::new(protocol, ports);
                    let afi = if matches!(nets[0], IpNet::V4(_)) {
                        AFI_IPV4
                    } else {
                        AFI_IPV6
                    };
                    let rules = nets
                        .iter()
                        .filter(|n| matches!(n, IpNet::V4(_)) == (afi == AFI_IPV4))
                        .map(|n| matcher.rule(*n))
                        .collect();
                    if reach {
                        Attribute::FlowspecReach {
                            afi,
                            next_hop: Vec::new(),
                            rules,
                        }
                    } else {
                        Attribute::FlowspecUnreach { afi, rules }
                    }
                }),
            (32u8..=254, proptest::collection::vec(any::<u8>(), 0..300)).prop_map(
                |(code, value)| Attribute::Other {
                    flags: FLAG_OPTIONAL | FLAG_TRANSITIVE,
                    code,
                    value
                }
            ),
        ]
    }

    fn message_strategy() -> impl Strategy<Value = Message> {
        prop_oneof![
            Just(Message::Keepalive),
            (
                any::<u8>(),
                any::<u8>(),
                proptest::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(|(code, subcode, data)| Message::Notification(
                    Notification {
                        code,
                        subcode,
                        data
                    }
                )),
            (any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>()).prop_map(
                |(my_as, hold_time, id, asn)| Message::Open(Open {
                    version: 4,
                    my_as,
                    hold_time,
                    bgp_id: Ipv4Addr::from(id),
                    capabilities: vec![
                        Capability::FourOctetAs(asn),
                        Capability::RouteRefresh,
                        Capability::Multiprotocol { afi: 2, safi: 1 },
                    ],
                })
            ),
            (
                proptest::collection::vec(v4_strategy(), 0..50),
                proptest::collection::vec(attribute_strategy(), 0..6),
                proptest::collection::vec(v4_strategy(), 0..50),
            )
                .prop_map(|(withdrawn, attributes, nlri)| Message::Update(Update {
                    withdrawn,
                    attributes,
                    nlri
                })),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(&bytes);
            for kind in 1..=4 {
                let _ = decode_body(kind, &bytes);
            }
        }

        #[test]
        fn decode_never_panics_on_a_valid_header_with_arbitrary_body(
            kind in 1u8..=4,
            body in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let mut bytes = vec![0xff; 16];
            bytes.extend_from_slice(&((body.len() + HEADER_LEN) as u16).to_be_bytes());
            bytes.push(kind);
            bytes.extend_from_slice(&body);
            let _ = decode(&bytes);
        }

        #[test]
        fn encode_then_decode_round_trips(message in message_strategy()) {
            let bytes = message.encode();
            prop_assume!(bytes.len() <= MAX_MESSAGE_LEN);
            prop_assert_eq!(decode(&bytes).unwrap(), message);
        }

        #[test]
        fn truncating_a_valid_message_never_panics(message in message_strategy(), cut in 0usize..4096) {
            let bytes = message.encode();
            let cut = cut.min(bytes.len());
            let _ = decode(&bytes[..cut]);
            if bytes.len() > HEADER_LEN {
                let _ = decode_body(bytes[18], &bytes[HEADER_LEN..cut.max(HEADER_LEN)]);
            }
        }
    }
}
