//! The lab against the real kernel: topology, probes, and cleanup (also after a panic).

use netban_testlab::{require_netns, wait_until, Edge, Lab};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PORT: u16 = 8080;

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn process_alive(pid: u32) -> bool {
    // A killed child we have not reaped is a zombie: count it as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn edge_topology_connects_everyone_through_the_router() {
    require_netns!();
    let edge = Lab::edge_topology("conn").unwrap();
    let _listener = edge.server.spawn_tcp_listener(PORT).unwrap();
    let quick = Duration::from_secs(2);
    for from in [&edge.attacker, &edge.client] {
        for server in [Edge::SERVER_V4, Edge::SERVER_V6] {
            assert!(
                wait_until(Duration::from_secs(5), Duration::from_millis(50), || from
                    .tcp_connects(server, PORT, quick)),
                "{} cannot connect to {server}",
                from.label()
            );
            assert!(from.pings(server), "{} cannot ping {server}", from.label());
        }
    }
    // The router answers on both sides, and the server's replies come back through it.
    assert!(edge.attacker.pings(Edge::ROUTER_LAN_V4));
    assert!(edge.server.pings(Edge::ROUTER_SERVER_V6));
    assert!(edge.server.pings(Edge::CLIENT_V4));
    assert!(edge.server.pings(Edge::CLIENT_V6));
    // No host has a default route: nothing can leave the lab.
    for host in [&edge.attacker, &edge.client, &edge.router, &edge.server] {
        for family in ["-4", "-6"] {
            let routes = host
                .run_ok("ip", [family, "route", "show", "default"])
                .unwrap();
            assert!(routes.trim().is_empty(), "{}: {routes}", host.label());
        }
    }
}

#[test]
fn probes_say_no_when_nothing_answers() {
    require_netns!();
    let edge = Lab::edge_topology("probes").unwrap();
    // Nobody listens: refused at once, so this is quick.
    assert!(!edge
        .client
        .tcp_connects(Edge::SERVER_V4, PORT + 1, Duration::from_secs(2)));
    // An address on the LAN that no host holds: neither ping nor connect succeed.
    assert!(!edge
        .server
        .pings_within("203.0.113.99", Duration::from_millis(300)));
    assert!(!edge
        .server
        .tcp_connects("2001:db8:a::99", PORT, Duration::from_millis(300)));
    // The listener is really the thing that made connects succeed.
    let mut listener = edge.server.spawn_tcp_listener(PORT).unwrap();
    assert!(edge
        .client
        .tcp_connects(Edge::SERVER_V4, PORT, Duration::from_secs(2)));
    listener.kill().unwrap();
    listener.wait().unwrap();
    assert!(wait_until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || !edge
            .client
            .tcp_connects(Edge::SERVER_V4, PORT, Duration::from_secs(1))
    ));
}

#[test]
fn cleanup_kills_processes_and_deletes_namespaces() {
    require_netns!();
    let lab = Lab::new("cleanup").unwrap();
    let a = lab.host("a").unwrap();
    let b = lab.host("b").unwrap();
    let link = lab
        .link(
            &a,
            &["198.18.0.1/30", "2001:db8:ff::1/64"],
            &b,
            &["198.18.0.2/30", "2001:db8:ff::2/64"],
        )
        .unwrap();
    assert_eq!(link.a, "v0-b");
    assert!(a.pings("198.18.0.2") && b.pings("2001:db8:ff::1"));
    // One tracked process, and one started behind the lab's back (untracked) in the same
    // namespace: both must die.
    let tracked = a.spawn("sleep", ["600"]).unwrap();
    let mut untracked = b.command("sleep").arg("600").spawn().unwrap();
    // Both run `sleep` once `ip netns exec` has entered the namespace and exec'd it.
    let comm = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(10),
        || comm(tracked.id()).trim() == "sleep" && comm(untracked.id()).trim() == "sleep"
    ));
    let names = [a.name().to_string(), b.name().to_string()];
    assert!(names.iter().all(|n| netns_exists(n)));

    lab.cleanup().unwrap();
    assert!(
        names.iter().all(|n| !netns_exists(n)),
        "{names:?} still exist"
    );
    assert!(!process_alive(tracked.id()));
    let status = untracked.wait().unwrap();
    assert!(!status.success(), "killed, not finished: {status}");
    lab.cleanup().unwrap(); // idempotent
    assert!(
        a.run_ok("true", [] as [&str; 0]).is_err(),
        "host unusable after cleanup"
    );
}

#[test]
fn drop_cleans_up_after_a_panicking_test() {
    require_netns!();
    let mut seen = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::new("panic").unwrap();
        let host = lab.host("victim").unwrap();
        // Taken out of its `Process` (and out of this closure) so that only the lab kills it.
        let child = host.spawn("sleep", ["600"]).unwrap().into_child();
        seen = Some((host.name().to_string(), child));
        panic!("test failure inside a lab");
    }));
    assert!(result.is_err());
    let (name, mut child) = seen.unwrap();
    assert!(!netns_exists(&name), "{name} left behind");
    assert!(
        !process_alive(child.id()),
        "process {} left running",
        child.id()
    );
    assert!(!child.wait().unwrap().success());
}

#[test]
fn new_lab_sweeps_namespaces_of_dead_test_processes() {
    require_netns!();
    // A PID that existed and is gone: a reaped child.
    let mut child = Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    let dead = child.id();
    if Path::new(&format!("/proc/{dead}")).exists() {
        panic!("pid {dead} was reused at once; rerun");
    }
    let stale = format!("nbl{dead}-0-stale-x");
    assert!(Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .unwrap()
        .success());
    let _lab = Lab::new("sweeper").unwrap();
    let gone = !netns_exists(&stale);
    if !gone {
        let _ = Command::new("ip")
            .args(["netns", "delete", &stale])
            .status();
    }
    assert!(gone, "{stale} not swept");
}
