//! Packing announcements and withdrawals into as few UPDATE messages as fit in 4096 bytes.
//!
//! IPv4 routes travel in the classic NLRI and withdrawn-routes fields (with NEXT_HOP), IPv6
//! routes in MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4760). Every announced route carries the
//! same attributes (ORIGIN IGP, the AS_PATH, LOCAL_PREF on iBGP, the configured communities),
//! so one UPDATE holds as many prefixes as fit: about 800 /32s or 230 /128s. Everything here is
//! rendered from parsed [`Prefix`] values.

use super::message::{
    prefix_len_on_wire, AsSegment, Attribute, Message, MpNextHop, Origin, Update, AFI_IPV6,
    MAX_MESSAGE_LEN,
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
    /// ORIGIN, AS_PATH, LOCAL_PREF (if any) and COMMUNITIES (if any), in type-code order.
    fn common(&self) -> Vec<Attribute> {
        let mut attrs = vec![Attribute::Origin(Origin::Igp)];
        attrs.push(Attribute::AsPath(if self.as_path.is_empty() {
            Vec::new()
        } else {
            vec![AsSegment::Sequence(self.as_path.clone())]
        }));
        if let Some(lp) = self.local_pref {
            attrs.push(Attribute::LocalPref(lp));
        }
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
    }
}
