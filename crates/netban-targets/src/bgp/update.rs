//! Packing announcements and withdrawals into as few UPDATE messages as fit in 4096 bytes.
//!
//! IPv4 routes travel in the classic NLRI and withdrawn-routes fields (with NEXT_HOP), IPv6
//! routes in MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4760). Every announced route carries the
//! same attributes (ORIGIN IGP, the AS_PATH, LOCAL_PREF on iBGP, the configured communities),
//! so one UPDATE holds as many prefixes as fit: about 800 /32s or 230 /128s. Everything here is
//! rendered from parsed [`Prefix`] values.
//!
//! Flow specification rules (SAFI 133) travel in MP_REACH_NLRI / MP_UNREACH_NLRI of AFI 1 or 2
//! with no next hop, and every announced rule carries the traffic-rate 0 (discard) extended
//! community instead of communities: [`announce_rules`], [`withdraw_rules`]. About 580
//! source-only /32 rules fit in one UPDATE.

use super::flowspec::{FlowPrefix, Rule, SourceMatch, TRAFFIC_RATE_DISCARD};
use super::message::{
    prefix_len_on_wire, AsSegment, Attribute, Message, MpNextHop, Origin, Update, AFI_IPV4,
    AFI_IPV6, MAX_MESSAGE_LEN,
};
use ipnet::IpNet;
use netban_core::Prefix;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The attributes of every route one session announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteAttributes {
    /// The AS_PATH: empty on iBGP, the local AS on eBGP.
    pub as_path: Vec<u32>,
    /// LOCAL_PREF, sent on iBGP only (RFC 4271 5.1.5).
    pub local_pref: Option<u32>,
    pub communities: Vec<u32>,
    pub next_hop_v4: Ipv4Addr,
    pub next_hop_v6: Ipv6Addr,
}

impl RouteAttributes {
    /// ORIGIN, AS_PATH and LOCAL_PREF (if any), in type-code order.
    fn path(&self) -> Vec<Attribute> {
        let mut attrs = vec![Attribute::Origin(Origin::Igp)];
        attrs.push(Attribute::AsPath(if self.as_path.is_empty() {
            Vec::new()
        } else {
            vec![AsSegment::Sequence(self.as_path.clone())]
        }));
        if let Some(lp) = self.local_pref {
            attrs.push(Attribute::LocalPref(lp));
        }
        attrs
    }

    /// ORIGIN, AS_PATH, LOCAL_PREF (if any) and COMMUNITIES (if any), in type-code order.
    fn common(&self) -> Vec<Attribute> {
        let mut attrs = self.path();
        if !self.communities.is_empty() {
            attrs.push(Attribute::Communities(self.communities.clone()));
        }
        attrs
    }
}

/// UPDATEs announcing `prefixes` (either family, any order) with `attrs`.
pub fn announce(prefixes: &[Prefix], attrs: &RouteAttributes) -> Vec<Message> {
    let (v4, v6) = split(prefixes);
    let mut out = Vec::new();
    if !v4.is_empty() {
        let mut base = attrs.common();
        // NEXT_HOP (type 3) goes after AS_PATH (type 2).
        base.insert(2, Attribute::NextHop(attrs.next_hop_v4));
        let template = Update {
            attributes: base,
            ..Update::default()
        };
        pack(
            &v4,
            &template,
            |u, chunk| u.nlri = chunk.iter().filter_map(as_v4).collect(),
            &mut out,
        );
    }
    if !v6.is_empty() {
        let mut base = attrs.common();
        base.push(Attribute::MpReach {
            next_hop: MpNextHop::V6 {
                global: attrs.next_hop_v6,
                link_local: None,
            },
            nlri: Vec::new(),
        });
        let template = Update {
            attributes: base,
            ..Update::default()
        };
        pack(
            &v6,
            &template,
            |u, chunk| {
                if let Some(Attribute::MpReach { nlri, .. }) = u.attributes.last_mut() {
                    *nlri = chunk.to_vec();
                }
            },
            &mut out,
        );
    }
    out
}

/// UPDATEs withdrawing `prefixes` (either family, any order).
pub fn withdraw(prefixes: &[Prefix]) -> Vec<Message> {
    let (v4, v6) = split(prefixes);
    let mut out = Vec::new();
    if !v4.is_empty() {
        pack(
            &v4,
            &Update::default(),
            |u, chunk| u.withdrawn = chunk.iter().filter_map(as_v4).collect(),
            &mut out,
        );
    }
    if !v6.is_empty() {
        let template = Update {
            attributes: vec![Attribute::MpUnreach {
                afi: AFI_IPV6,
                withdrawn: Vec::new(),
            }],
            ..Update::default()
        };
        pack(
            &v6,
            &template,
            |u, chunk| {
                if let Some(Attribute::MpUnreach { withdrawn, .. }) = u.attributes.last_mut() {
                    *withdrawn = chunk.to_vec();
                }
            },
            &mut out,
        );
    }
    out
}

/// A ban as a flow specification rule: the banned prefix (the rule's source) and what the
/// rule matches besides it.
pub type ShapedPrefix = (Prefix, SourceMatch);

/// UPDATEs announcing one discard rule per entry (either family, any order), with the
/// traffic-rate 0 extended community. Attributes in type-code order: ORIGIN, AS_PATH,
/// LOCAL_PREF (iBGP), MP_REACH_NLRI, EXTENDED COMMUNITIES, as GoBGP sends them (ExaBGP puts
/// the community before MP_REACH_NLRI); the configured communities are for blackhole routes
/// and are not sent with rules.
pub fn announce_rules(rules: &[ShapedPrefix], attrs: &RouteAttributes) -> Vec<Message> {
    let mut out = Vec::new();
    for (afi, rules) in rules_by_family(rules) {
        let mut attributes = attrs.path();
        attributes.push(Attribute::FlowspecReach {
            afi,
            next_hop: Vec::new(),
            rules: Vec::new(),
        });
        attributes.push(Attribute::ExtendedCommunities(vec![TRAFFIC_RATE_DISCARD]));
        let template = Update {
            attributes,
            ..Update::default()
        };
        pack_rules(&rules, &template, &mut out);
    }
    out
}

/// UPDATEs withdrawing the rules of `rules` (either family, any order): MP_UNREACH_NLRI
/// alone, as GoBGP sends it (ExaBGP repeats ORIGIN, AS_PATH and the community beside it; RFC
/// 4760 section 4 needs none of them).
pub fn withdraw_rules(rules: &[ShapedPrefix]) -> Vec<Message> {
    let mut out = Vec::new();
    for (afi, rules) in rules_by_family(rules) {
        let template = Update {
            attributes: vec![Attribute::FlowspecUnreach {
                afi,
                rules: Vec::new(),
            }],
            ..Update::default()
        };
        pack_rules(&rules, &template, &mut out);
    }
    out
}

/// The rules of the IPv4 prefixes, then those of the IPv6 prefixes; families without any are
/// left out.
fn rules_by_family(rules: &[ShapedPrefix]) -> Vec<(u16, Vec<Rule>)> {
    let (v4, v6): (Vec<Rule>, Vec<Rule>) = rules
        .iter()
        .map(|(prefix, shape)| shape.rule(prefix.net()))
        .partition(|r| matches!(r.source(), Some(FlowPrefix::V4(_))));
    [(AFI_IPV4, v4), (AFI_IPV6, v6)]
        .into_iter()
        .filter(|(_, rules)| !rules.is_empty())
        .collect()
}

/// Cuts `rules` into chunks that fit one message built on `template` (which holds one empty
/// flowspec MP attribute) and appends the messages to `out`. One byte is kept spare: the MP
/// attribute's length takes a second octet once it passes 255 bytes.
fn pack_rules(rules: &[Rule], template: &Update, out: &mut Vec<Message>) {
    let base = Message::Update(template.clone()).encode().len();
    let room = MAX_MESSAGE_LEN - base - 1;
    let mut start = 0;
    while start < rules.len() {
        let mut used = 0;
        let mut end = start;
        while end < rules.len() && used + rules[end].len_on_wire() <= room {
            used += rules[end].len_on_wire();
            end += 1;
        }
        // A configured rule is far shorter than a message; never loop on one that is not.
        end = end.max(start + 1);
        let mut update = template.clone();
        for a in &mut update.attributes {
            if let Attribute::FlowspecReach { rules: r, .. }
            | Attribute::FlowspecUnreach { rules: r, .. } = a
            {
                *r = rules[start..end].to_vec();
            }
        }
        out.push(Message::Update(update));
        start = end;
    }
}

fn split(prefixes: &[Prefix]) -> (Vec<IpNet>, Vec<IpNet>) {
    prefixes
        .iter()
        .map(|p| p.net())
        .partition(|n| matches!(n, IpNet::V4(_)))
}

fn as_v4(net: &IpNet) -> Option<ipnet::Ipv4Net> {
    match net {
        IpNet::V4(n) => Some(*n),
        IpNet::V6(_) => None,
    }
}

/// Cuts `nets` into chunks that fit the space `template` leaves in one message, fills each
/// chunk into a copy of the template with `fill` and appends the messages to `out`. The size
/// is linear in the prefixes: the MP attributes always use a 2-octet length.
fn pack(
    nets: &[IpNet],
    template: &Update,
    fill: impl Fn(&mut Update, &[IpNet]),
    out: &mut Vec<Message>,
) {
    let base = Message::Update(template.clone()).encode().len();
    let room = MAX_MESSAGE_LEN - base;
    let mut start = 0;
    while start < nets.len() {
        let mut used = 0;
        let mut end = start;
        while end < nets.len() && used + prefix_len_on_wire(&nets[end]) <= room {
            used += prefix_len_on_wire(&nets[end]);
            end += 1;
        }
        let mut update = template.clone();
        fill(&mut update, &nets[start..end]);
        out.push(Message::Update(update));
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::message::decode;

    fn attrs() -> RouteAttributes {
        RouteAttributes {
            as_path: vec![65001],
            local_pref: None,
            communities: vec![0xffff_029a, 0xffff_ff01],
            next_hop_v4: Ipv4Addr::new(198, 18, 0, 2),
            next_hop_v6: "2001:db8:ff::2".parse().unwrap(),
        }
    }

    fn hosts_v4(n: u32) -> Vec<Prefix> {
        (0..n)
            .map(|i| Prefix::host(Ipv4Addr::from(0xcb00_0000 + i).into()))
            .collect()
    }

    fn hosts_v6(n: u128) -> Vec<Prefix> {
        (0..n)
            .map(|i| Prefix::host(Ipv6Addr::from(0x2001_0db8_000a_u128 << 80 | i).into()))
            .collect()
    }

    /// Every message fits, decodes, and together they carry exactly the prefixes.
    fn check(messages: &[Message], want: &[Prefix], announce: bool) -> Vec<usize> {
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        for m in messages {
            let bytes = m.encode_checked().expect("fits in 4096 bytes");
            sizes.push(bytes.len());
            let Message::Update(u) = decode(&bytes).unwrap() else {
                panic!("not an UPDATE")
            };
            if announce {
                got.extend(u.nlri.iter().map(|n| Prefix::from_net(IpNet::V4(*n))));
                assert!(u.withdrawn.is_empty());
            } else {
                got.extend(u.withdrawn.iter().map(|n| Prefix::from_net(IpNet::V4(*n))));
                assert!(u.nlri.is_empty());
            }
            for a in &u.attributes {
                match a {
                    Attribute::MpReach { nlri, .. } if announce => {
                        got.extend(nlri.iter().map(|n| Prefix::from_net(*n)))
                    }
                    Attribute::MpUnreach { withdrawn, .. } if !announce => {
                        got.extend(withdrawn.iter().map(|n| Prefix::from_net(*n)))
                    }
                    _ => {}
                }
            }
        }
        let mut want = want.to_vec();
        want.sort();
        got.sort();
        assert_eq!(got, want);
        sizes
    }

    #[test]
    fn about_800_host_routes_per_ipv4_update() {
        let prefixes = hosts_v4(2000);
        let messages = announce(&prefixes, &attrs());
        let sizes = check(&messages, &prefixes, true);
        assert_eq!(messages.len(), 3, "{sizes:?}");
        let Message::Update(first) = &messages[0] else {
            panic!()
        };
        assert!(
            (790..=810).contains(&first.nlri.len()),
            "{}",
            first.nlri.len()
        );
        assert!(sizes[0] > MAX_MESSAGE_LEN - 5, "{sizes:?}");
    }

    #[test]
    fn about_230_host_routes_per_ipv6_update() {
        let prefixes = hosts_v6(1000);
        let messages = announce(&prefixes, &attrs());
        let sizes = check(&messages, &prefixes, true);
        assert_eq!(messages.len(), 5, "{sizes:?}");
        assert!(sizes[0] > MAX_MESSAGE_LEN - 17, "{sizes:?}");
    }

    #[test]
    fn withdrawals_pack_both_families() {
        let mut prefixes = hosts_v4(1500);
        prefixes.extend(hosts_v6(300));
        prefixes.push(Prefix::parse("198.51.100.0/24").unwrap());
        let messages = withdraw(&prefixes);
        check(&messages, &prefixes, false);
        assert_eq!(messages.len(), 2 + 2);
    }

    #[test]
    fn ibgp_routes_carry_local_pref_and_an_empty_as_path() {
        let attrs = RouteAttributes {
            as_path: vec![],
            local_pref: Some(100),
            ..attrs()
        };
        let messages = announce(&[Prefix::parse("203.0.113.7").unwrap()], &attrs);
        let Message::Update(u) = &messages[0] else {
            panic!()
        };
        assert_eq!(
            u.attributes,
            vec![
                Attribute::Origin(Origin::Igp),
                Attribute::AsPath(vec![]),
                Attribute::NextHop(Ipv4Addr::new(198, 18, 0, 2)),
                Attribute::LocalPref(100),
                Attribute::Communities(vec![0xffff_029a, 0xffff_ff01]),
            ]
        );
    }

    #[test]
    fn nothing_to_say_is_no_message() {
        assert!(announce(&[], &attrs()).is_empty());
        assert!(withdraw(&[]).is_empty());
        assert!(announce_rules(&[], &attrs()).is_empty());
        assert!(withdraw_rules(&[]).is_empty());
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const MARKER: &str = "ffffffffffffffffffffffffffffffff";
    /// The UPDATEs GoBGP 3.10 sent for rules A (source 203.0.113.7/32), B (A + protocol tcp +
    /// destination port 22) and C (source 2001:db8:a::7/128), each then withdrawn, captured
    /// with tcpdump (shared field notes, flowspec section 1b), without the marker.
    const GOBGP: [(&str, &str); 3] = [
        (
            "003e02000000274001010240020602010000fde9800e0c0001850000060220cb007107c010088006000000000000",
            "0024020000000d800f0a000185060220cb007107",
        ),
        (
            "0044020000002d4001010240020602010000fde9800e1200018500000c0220cb007107038106058116c010088006000000000000",
            "002a0200000013800f100001850c0220cb007107038106058116",
        ),
        (
            "004b02000000344001010240020602010000fde9800e1900028500001302800020010db8000a00000000000000000007c010088006000000000000",
            "0031020000001a800f170002851302800020010db8000a00000000000000000007",
        ),
    ];
    /// Where the ORIGIN value sits: header (19), withdrawn length (2), attributes length (2),
    /// ORIGIN's flags, type and length (3).
    const ORIGIN_VALUE_AT: usize = 26;

    #[test]
    fn rules_are_gobgps_updates_byte_for_byte_but_for_origin() {
        let cases = [
            (SourceMatch::default(), "203.0.113.7"),
            (SourceMatch::new(Some(6), vec![22]), "203.0.113.7"),
            (SourceMatch::default(), "2001:db8:a::7"),
        ];
        for ((matcher, source), (announce, withdrawal)) in cases.iter().zip(GOBGP) {
            let rule = [(Prefix::parse(source).unwrap(), matcher.clone())];
            let sent = announce_rules(&rule, &attrs());
            assert_eq!(sent.len(), 1);
            let mut gobgp = hex(&format!("{MARKER}{announce}"));
            // GoBGP gives routes made with its CLI ORIGIN INCOMPLETE (2); netban's are IGP (0)
            // like its blackhole routes and like ExaBGP's rules (which differ from netban's
            // only in putting EXTENDED COMMUNITIES before MP_REACH_NLRI).
            assert_eq!(gobgp[ORIGIN_VALUE_AT], 2);
            gobgp[ORIGIN_VALUE_AT] = 0;
            assert_eq!(sent[0].encode(), gobgp, "{source} {matcher:?}");
            let gone = withdraw_rules(&rule);
            assert_eq!(gone.len(), 1);
            assert_eq!(gone[0].encode(), hex(&format!("{MARKER}{withdrawal}")));
        }
    }

    /// The UPDATEs ExaBGP 4.2.21 (Debian) sent for the same kind of rules, each announced
    /// then withdrawn through its API (`announce flow route { match { source …; protocol =tcp;
    /// destination-port =22; } then { discard; } }`), captured with tcpdump on 2026-12-02
    /// (notes/flowspec2-notes.md), without the marker. Rules: A source 203.0.113.7/32; B A +
    /// tcp + port 22; C source 2001:db8:a::7/128; D C + next header tcp + port 22; E source
    /// 203.0.113.64/26 + tcp + ports 22 and 443.
    const EXABGP: [(&str, &str); 5] = [
        (
            "003e02000000274001010040020602010000fde9c010088006000000000000800e0c0001850000060220cb007107",
            "003c02000000254001010040020602010000fde9c010088006000000000000800f0a000185060220cb007107",
        ),
        (
            "0044020000002d4001010040020602010000fde9c010088006000000000000800e1200018500000c0220cb007107038106058116",
            "0042020000002b4001010040020602010000fde9c010088006000000000000800f100001850c0220cb007107038106058116",
        ),
        (
            "004b02000000344001010040020602010000fde9c010088006000000000000800e1900028500001302800020010db8000a00000000000000000007",
            "004902000000324001010040020602010000fde9c010088006000000000000800f170002851302800020010db8000a00000000000000000007",
        ),
        (
            "0051020000003a4001010040020602010000fde9c010088006000000000000800e1f00028500001902800020010db8000a00000000000000000007038106058116",
            "004f02000000384001010040020602010000fde9c010088006000000000000800f1d0002851902800020010db8000a00000000000000000007038106058116",
        ),
        (
            "004702000000304001010040020602010000fde9c010088006000000000000800e1500018500000f021acb0071400381060501169101bb",
            "0045020000002e4001010040020602010000fde9c010088006000000000000800f130001850f021acb0071400381060501169101bb",
        ),
    ];

    /// The path attributes of an UPDATE without withdrawn routes or NLRI, as raw
    /// (type code, whole attribute bytes) pairs, split by their own flags and lengths (not by
    /// netban's decoder).
    fn raw_attributes(update: &[u8]) -> Vec<(u8, Vec<u8>)> {
        assert_eq!(&update[19..21], [0, 0], "withdrawn routes");
        let len = usize::from(u16::from_be_bytes([update[21], update[22]]));
        let mut rest = &update[23..23 + len];
        assert_eq!(update.len(), 23 + len, "classic NLRI");
        let mut out = Vec::new();
        while !rest.is_empty() {
            let extended = rest[0] & 0x10 != 0;
            let (head, value_len) = if extended {
                (4, usize::from(u16::from_be_bytes([rest[2], rest[3]])))
            } else {
                (3, usize::from(rest[2]))
            };
            out.push((rest[1], rest[..head + value_len].to_vec()));
            rest = &rest[head + value_len..];
        }
        out
    }

    /// An UPDATE (marker and header included) of `attributes`.
    fn update_of(attributes: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let body: Vec<u8> = attributes.iter().flat_map(|(_, a)| a.clone()).collect();
        let mut out = hex(MARKER);
        out.extend_from_slice(&((23 + body.len()) as u16).to_be_bytes());
        out.push(2);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn rules_are_exabgps_updates_byte_for_byte_but_for_attribute_order_and_withdrawals() {
        const ORIGIN: u8 = 1;
        const AS_PATH: u8 = 2;
        const MP_REACH: u8 = 14;
        const MP_UNREACH: u8 = 15;
        const EXTENDED_COMMUNITIES: u8 = 16;
        let cases = [
            (SourceMatch::default(), "203.0.113.7"),
            (SourceMatch::new(Some(6), vec![22]), "203.0.113.7"),
            (SourceMatch::default(), "2001:db8:a::7"),
            (SourceMatch::new(Some(6), vec![22]), "2001:db8:a::7"),
            (SourceMatch::new(Some(6), vec![443, 22]), "203.0.113.64/26"),
        ];
        for ((matcher, source), (announce, withdrawal)) in cases.iter().zip(EXABGP) {
            let rule = [(Prefix::parse(source).unwrap(), matcher.clone())];
            let ours = announce_rules(&rule, &attrs());
            assert_eq!(ours.len(), 1);
            let ours = ours[0].encode();
            let exabgp = hex(&format!("{MARKER}{announce}"));
            // The same ORIGIN (IGP), AS_PATH, MP_REACH_NLRI (no next hop, the rule) and
            // traffic-rate 0 community, byte for byte; ExaBGP writes the community (type 16)
            // before MP_REACH_NLRI (type 14), netban (like GoBGP) in type-code order.
            let mut attributes = raw_attributes(&exabgp);
            assert_eq!(update_of(&attributes), exabgp, "the splitter loses no byte");
            let order: Vec<u8> = attributes.iter().map(|(t, _)| *t).collect();
            assert_eq!(order, [ORIGIN, AS_PATH, EXTENDED_COMMUNITIES, MP_REACH]);
            attributes.sort_by_key(|(t, _)| *t);
            assert_eq!(ours, update_of(&attributes), "{source} {matcher:?}");

            // Withdrawn: ExaBGP repeats ORIGIN, AS_PATH and the community beside
            // MP_UNREACH_NLRI; netban sends MP_UNREACH_NLRI alone (RFC 4760 section 4: no
            // other attribute is needed), which is byte for byte ExaBGP's MP_UNREACH_NLRI.
            let gone = withdraw_rules(&rule);
            assert_eq!(gone.len(), 1);
            let exabgp = hex(&format!("{MARKER}{withdrawal}"));
            let attributes = raw_attributes(&exabgp);
            let order: Vec<u8> = attributes.iter().map(|(t, _)| *t).collect();
            assert_eq!(order, [ORIGIN, AS_PATH, EXTENDED_COMMUNITIES, MP_UNREACH]);
            let unreach: Vec<_> = attributes
                .into_iter()
                .filter(|(t, _)| *t == MP_UNREACH)
                .collect();
            assert_eq!(
                gone[0].encode(),
                update_of(&unreach),
                "{source} {matcher:?}"
            );
            // The announcement's community is the one on ExaBGP's withdrawal.
            assert_eq!(raw_attributes(&exabgp)[2].1, hex("c010088006000000000000"),);
        }
        // Where GoBGP and ExaBGP sent the same rules, their NLRI are the same bytes.
        for ((gobgp, _), (exabgp, _)) in GOBGP.iter().zip(EXABGP) {
            let mp = |hexed: &str, t: u8| {
                raw_attributes(&hex(&format!("{MARKER}{hexed}")))
                    .into_iter()
                    .find(|(code, _)| *code == t)
                    .unwrap()
                    .1
            };
            assert_eq!(mp(gobgp, MP_REACH), mp(exabgp, MP_REACH));
        }
    }

    #[test]
    fn gobgps_updates_decode_to_the_rules_netban_makes() {
        for ((matcher, source), (announce, _)) in [
            (SourceMatch::new(Some(6), vec![22]), "203.0.113.7/32"),
            (SourceMatch::default(), "2001:db8:a::7/128"),
        ]
        .iter()
        .zip([GOBGP[1], GOBGP[2]])
        {
            let Message::Update(u) = decode(&hex(&format!("{MARKER}{announce}"))).unwrap() else {
                panic!("not an UPDATE")
            };
            let want = matcher.rule(source.parse().unwrap());
            assert!(
                u.attributes.iter().any(|a| matches!(
                    a,
                    Attribute::FlowspecReach { next_hop, rules, .. }
                        if next_hop.is_empty() && rules == &vec![want.clone()]
                )),
                "{u:?}"
            );
            assert!(u
                .attributes
                .contains(&Attribute::ExtendedCommunities(vec![TRAFFIC_RATE_DISCARD])));
        }
    }

    fn shaped(prefixes: &[Prefix], matcher: &SourceMatch) -> Vec<ShapedPrefix> {
        prefixes.iter().map(|p| (*p, matcher.clone())).collect()
    }

    /// Every message fits and decodes; together they carry exactly one rule per prefix.
    fn check_rules(messages: &[Message], want: &[Prefix], matcher: &SourceMatch, announce: bool) {
        let mut got = Vec::new();
        for m in messages {
            let bytes = m.encode_checked().expect("fits in 4096 bytes");
            let Message::Update(u) = decode(&bytes).unwrap() else {
                panic!("not an UPDATE")
            };
            assert!(u.nlri.is_empty() && u.withdrawn.is_empty());
            for a in &u.attributes {
                match a {
                    Attribute::FlowspecReach { rules, .. } if announce => got.extend(rules.clone()),
                    Attribute::FlowspecUnreach { rules, .. } if !announce => {
                        got.extend(rules.clone())
                    }
                    Attribute::FlowspecReach { .. } | Attribute::FlowspecUnreach { .. } => {
                        panic!("wrong MP attribute in {u:?}")
                    }
                    _ => {}
                }
            }
        }
        let mut want: Vec<Rule> = want.iter().map(|p| matcher.rule(p.net())).collect();
        want.sort();
        got.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn rules_pack_into_full_updates_of_both_families() {
        let mut prefixes = hosts_v4(2000);
        prefixes.extend(hosts_v6(500));
        for matcher in [
            SourceMatch::default(),
            SourceMatch::new(Some(17), vec![53, 123, 443]),
        ] {
            let rules = shaped(&prefixes, &matcher);
            let messages = announce_rules(&rules, &attrs());
            check_rules(&messages, &prefixes, &matcher, true);
            let sizes: Vec<usize> = messages.iter().map(|m| m.encode().len()).collect();
            // Full messages: less than one rule's room left in each but the last of a family.
            assert!(sizes[0] > MAX_MESSAGE_LEN - 40, "{sizes:?}");
            let withdrawals = withdraw_rules(&rules);
            check_rules(&withdrawals, &prefixes, &matcher, false);
        }
        // Source-only /32 rules: 7 bytes each, about 580 per UPDATE.
        let messages = announce_rules(&shaped(&hosts_v4(2000), &SourceMatch::default()), &attrs());
        assert_eq!(messages.len(), 4);
    }
}
