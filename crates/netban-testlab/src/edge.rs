//! The edge topology: an attacker and a legitimate client on one LAN, a router, a server.
//!
//! ```text
//!   attacker 203.0.113.7/24   2001:db8:a::7/64  ─┐
//!                                                ├─ br-lan 203.0.113.1/24 2001:db8:a::1/64
//!   client   203.0.113.20/24  2001:db8:a::20/64 ─┘  router (forwarding)
//!                                                   198.51.100.1/24 2001:db8:b::1/64
//!                                                          │
//!                               server 198.51.100.10/24 2001:db8:b::10/64
//! ```
//!
//! The LAN is a bridge inside the router namespace, so attacker and client both reach the
//! server only through the router's forward path (and the router itself through its input
//! path). Routes are specific (no default route anywhere).

use crate::{Host, Lab};
use std::io;

/// The edge lab. Fields drop in order, the lab last (hosts hold no resources of their own).
#[derive(Debug)]
pub struct Edge {
    pub attacker: Host,
    pub client: Host,
    pub router: Host,
    pub server: Host,
    pub lab: Lab,
}

impl Edge {
    pub const ATTACKER_V4: &'static str = "203.0.113.7";
    pub const ATTACKER_V6: &'static str = "2001:db8:a::7";
    pub const CLIENT_V4: &'static str = "203.0.113.20";
    pub const CLIENT_V6: &'static str = "2001:db8:a::20";
    /// The router's address on the LAN side.
    pub const ROUTER_LAN_V4: &'static str = "203.0.113.1";
    pub const ROUTER_LAN_V6: &'static str = "2001:db8:a::1";
    /// The router's address on the server side.
    pub const ROUTER_SERVER_V4: &'static str = "198.51.100.1";
    pub const ROUTER_SERVER_V6: &'static str = "2001:db8:b::1";
    pub const SERVER_V4: &'static str = "198.51.100.10";
    pub const SERVER_V6: &'static str = "2001:db8:b::10";
    pub const LAN_V4: &'static str = "203.0.113.0/24";
    pub const LAN_V6: &'static str = "2001:db8:a::/64";
    pub const SERVER_NET_V4: &'static str = "198.51.100.0/24";
    pub const SERVER_NET_V6: &'static str = "2001:db8:b::/64";
    /// The bridge in the router namespace that the LAN hosts plug into.
    pub const LAN_BRIDGE: &'static str = "br-lan";
}

impl Lab {
    /// Builds the edge topology (see the module documentation) in a new lab tagged `tag`.
    pub fn edge_topology(tag: &str) -> io::Result<Edge> {
        let lab = Lab::new(tag)?;
        let attacker = lab.host("attacker")?;
        let client = lab.host("client")?;
        let router = lab.host("router")?;
        let server = lab.host("server")?;

        router.enable_forwarding()?;
        router.add_bridge(Edge::LAN_BRIDGE, &["203.0.113.1/24", "2001:db8:a::1/64"])?;
        lab.link_to_bridge(
            &attacker,
            &["203.0.113.7/24", "2001:db8:a::7/64"],
            &router,
            Edge::LAN_BRIDGE,
        )?;
        lab.link_to_bridge(
            &client,
            &["203.0.113.20/24", "2001:db8:a::20/64"],
            &router,
            Edge::LAN_BRIDGE,
        )?;
        lab.link(
            &router,
            &["198.51.100.1/24", "2001:db8:b::1/64"],
            &server,
            &["198.51.100.10/24", "2001:db8:b::10/64"],
        )?;
        for lan_host in [&attacker, &client] {
            lan_host.route(Edge::SERVER_NET_V4, Edge::ROUTER_LAN_V4)?;
            lan_host.route(Edge::SERVER_NET_V6, Edge::ROUTER_LAN_V6)?;
        }
        server.route(Edge::LAN_V4, Edge::ROUTER_SERVER_V4)?;
        server.route(Edge::LAN_V6, Edge::ROUTER_SERVER_V6)?;

        Ok(Edge {
            attacker,
            client,
            router,
            server,
            lab,
        })
    }
}
