//! `netban-lab demo`: the whole story in one terminal.
//!
//! Builds the edge lab (attacker, client, router, server in network namespaces), starts a real
//! fail2ban reading an auth log and a real netban daemon (SQLite ledger) enforcing with nftables
//! on the router, simulates an SSH brute force from the attacker, and shows the ban arriving in
//! `netban status` / `netban list` while the attacker's connections fail and the legitimate
//! client's succeed. Everything is removed at the end, also on failure.

use netban_testlab::fail2ban::Fail2ban;
use netban_testlab::netban::{Binaries, Daemon};
use netban_testlab::{netns_available, wait_until, Edge, Host, Lab};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const PORT: u16 = 22;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut bin_dir: Option<PathBuf> = None;
    let mut command = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bin-dir" => bin_dir = args.next().map(PathBuf::from),
            "demo" => command = Some(arg),
            "-h" | "--help" => {
                println!("usage: netban-lab demo [--bin-dir DIR]");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("netban-lab: unknown argument {other:?} (usage: netban-lab demo [--bin-dir DIR])");
                return ExitCode::from(2);
            }
        }
    }
    if command.is_none() {
        eprintln!("usage: netban-lab demo [--bin-dir DIR]");
        return ExitCode::from(2);
    }
    match demo(bin_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nnetban-lab: demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn step(text: &str) {
    println!("\n\x1b[1m== {text}\x1b[0m");
}

fn show(daemon: &Daemon, args: &[&str]) {
    println!("$ netban {}", args.join(" "));
    let out = daemon.client(args);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}

fn probe(from: &Host, who: &str, addr: &str) -> (bool, bool) {
    let tcp = from.tcp_connects(addr, PORT, Duration::from_millis(800));
    let icmp = from.pings(addr);
    let mark = |ok: bool| {
        if ok {
            "\x1b[32mconnects\x1b[0m"
        } else {
            "\x1b[31mdropped\x1b[0m"
        }
    };
    let mark_icmp = |ok: bool| {
        if ok {
            "\x1b[32manswered\x1b[0m"
        } else {
            "\x1b[31mdropped\x1b[0m"
        }
    };
    println!(
        "  {who:<8} → {addr:<16} tcp/{PORT}: {:<20} ping: {}",
        mark(tcp),
        mark_icmp(icmp)
    );
    (tcp, icmp)
}

fn demo(bin_dir: Option<PathBuf>) -> Result<(), String> {
    netns_available().map_err(|e| format!("network namespaces are needed (run as root): {e}"))?;
    let bins = match bin_dir {
        Some(dir) => Binaries::in_dir(&dir),
        None => Binaries::locate(),
    };
    let work = std::env::temp_dir().join(format!("netban-lab-{}", std::process::id()));
    let result = run(&bins, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn run(bins: &Binaries, work: &std::path::Path) -> Result<(), String> {
    step("Building the lab: attacker and client → router → server (network namespaces)");
    let edge = Lab::edge_topology("demo").map_err(|e| e.to_string())?;
    println!("  attacker {} / {}", Edge::ATTACKER_V4, Edge::ATTACKER_V6);
    println!("  client   {} / {}", Edge::CLIENT_V4, Edge::CLIENT_V6);
    println!(
        "  server   {} / {} (a TCP service on port {PORT})",
        Edge::SERVER_V4,
        Edge::SERVER_V6
    );
    let _service = edge
        .server
        .spawn_tcp_listener(PORT)
        .map_err(|e| e.to_string())?;
    for addr in [Edge::SERVER_V4, Edge::SERVER_V6] {
        probe(&edge.attacker, "attacker", addr);
        probe(&edge.client, "client", addr);
    }

    step("Starting netban (SQLite ledger) with an nftables target on the router");
    let config = format!(
        "[policy]\nallowlist = [\"{}/32\"]\n\n[[targets]]\nname = \"edge-router\"\ntype = \"nftables\"\nnetns = \"{}\"\n",
        Edge::CLIENT_V4,
        edge.router.name()
    );
    let daemon = Daemon::start(bins, &work.join("netban"), &config).map_err(|e| e.to_string())?;
    println!("  config {}", daemon.config.display());
    let jails = "[DEFAULT]\nbanaction = netban\nbanaction_allports = netban\n\n\
        [sshd]\nenabled = true\nbackend = polling\nlogpath = {auth_log}\nmaxretry = 3\nfindtime = 600\nbantime = 600\n\n\
        [recidive]\nenabled = true\nbackend = polling\nlogpath = {own_log}\nmaxretry = 3\nfindtime = 86400\nbantime = 604800\n";
    step("Starting fail2ban 1.0.2 with netban as its ban action (jails sshd and recidive)");
    let f2b = Fail2ban::start(&work.join("fail2ban"), &bins.client, &daemon.config, jails)
        .map_err(|e| e.to_string())?;
    println!("  fail2ban reads {}", f2b.auth_log.display());

    step("The attacker brute-forces SSH (3 failed passwords over IPv4 and over IPv6)");
    for ip in [Edge::ATTACKER_V4, Edge::ATTACKER_V6] {
        f2b.fail_ssh(ip, 3).map_err(|e| e.to_string())?;
        println!("  sshd: Failed password for root from {ip} ×3");
    }
    let started = Instant::now();
    let banned = wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
        let listed = daemon.listed();
        listed.iter().any(|p| p.starts_with(Edge::ATTACKER_V4))
            && listed.iter().any(|p| p.starts_with(Edge::ATTACKER_V6))
    });
    if !banned {
        return Err(format!(
            "fail2ban did not ban within 30 s; its log:\n{}",
            f2b.log()
        ));
    }
    println!(
        "  banned {:.2} s after the log lines (fail2ban polls its log)",
        started.elapsed().as_secs_f64()
    );

    step("netban status and list");
    let synced = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        daemon.status()["targets"][0]["held"].as_u64() == Some(2)
    });
    if !synced {
        return Err(format!(
            "the router did not receive the bans; netban log:\n{}",
            daemon.log()
        ));
    }
    show(&daemon, &["status"]);
    show(&daemon, &["list"]);

    step("Traffic now: the attacker is dropped at the router, the client is not");
    let mut ok = true;
    for addr in [Edge::SERVER_V4, Edge::SERVER_V6] {
        let (a_tcp, a_icmp) = probe(&edge.attacker, "attacker", addr);
        let (c_tcp, c_icmp) = probe(&edge.client, "client", addr);
        ok &= !a_tcp && !a_icmp && c_tcp && c_icmp;
    }
    step("What the router holds ($ nft list set inet netban ban4, in the router namespace)");
    if let Ok(out) = edge
        .router
        .run("nft", ["list", "set", "inet", "netban", "ban4"])
    {
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    step("The allowlisted client cannot be banned, whatever fail2ban says");
    show(&daemon, &["ban", Edge::CLIENT_V4]);
    step("History of the attacker");
    show(&daemon, &["history", Edge::ATTACKER_V4]);
    step("Cleaning up (namespaces, fail2ban, netban)");
    drop(f2b);
    drop(daemon);
    drop(edge);
    println!("  done");
    if ok {
        println!("\n\x1b[1mdemo ok:\x1b[0m fail2ban detected, netban banned at the edge, only the attacker was dropped");
        Ok(())
    } else {
        Err("traffic did not behave as expected (see above)".into())
    }
}
