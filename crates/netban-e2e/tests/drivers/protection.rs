//! Never ban the infrastructure: a daemon in its own network namespace, with a default
//! gateway (IPv4 and IPv6 link-local), a resolver (`/etc/netns/NAME/resolv.conf`, which
//! `ip netns exec` puts in place of /etc/resolv.conf) and a Cisco IOS target whose router is
//! at a management address. Banning any of them is refused with its reason and changes
//! nothing (ledger and nftables set), while an ordinary ban goes through; `check-config`
//! shows the protected set with reasons.

use netban_testlab::netban::Binaries;
use netban_testlab::{nft, wait_until, Lab};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Removes `/etc/netns/NAME` (the namespace's resolv.conf) when the test ends.
struct NetnsEtc(std::path::PathBuf);

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_gateway_a_resolver_and_a_management_address_are_never_banned() {
    if let Err(why) = netban_testlab::netns_available() {
        assert!(!netban_testlab::netns_required(), "{why}");
        eprintln!("skipped: {why}");
        return;
    }
    let bins = Binaries::locate();
    let lab = Lab::new("hsprotect").unwrap();
    let host = lab.host("hsd").unwrap();
    let gw = lab.host("hsgw").unwrap();
    let link = lab
        .link(&host, &["10.66.0.2/24"], &gw, &["10.66.0.1/24"])
        .unwrap();
    gw.ip(&["-6", "addr", "add", "fe80::1/64", "dev", &link.b])
        .unwrap();
    host.ip(&["route", "add", "default", "via", "10.66.0.1"])
        .unwrap();
    host.ip(&[
        "-6", "route", "add", "default", "via", "fe80::1", "dev", &link.a,
    ])
    .unwrap();
    let etc = NetnsEtc(std::path::PathBuf::from("/etc/netns").join(host.name()));
    std::fs::create_dir_all(&etc.0).unwrap();
    std::fs::write(
        etc.0.join("resolv.conf"),
        "# hs lab\nnameserver 10.66.5.53\n",
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let password = d.join("router.pw");
    std::fs::write(&password, "hs-router-pw\n").unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    let socket = d.join("netban.sock");
    let config = d.join("netban.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket = \"{}\"\nledger = \"{}\"\n\n\
             [reconciler]\nretry_min_secs = 1\nretry_max_secs = 2\n\n\
             [[targets]]\nname = \"local\"\ntype = \"nftables\"\n\n\
             [[targets]]\nname = \"edge\"\ntype = \"cisco_ios\"\nhost = \"10.66.9.9\"\n\
             username = \"netban\"\npassword_file = \"{}\"\n\
             host_key_fingerprint = \"SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\n\
             timeout_secs = 2\n",
            socket.display(),
            d.join("ledger.db").display(),
            password.display()
        ),
    )
    .unwrap();

    // check-config, inside the namespace: the protected set with reasons.
    let out = host
        .command(&bins.daemon)
        .arg("--config")
        .arg(&config)
        .arg("--check-config")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        format!(
            "10.66.0.1/32 a default gateway of this machine, via {}",
            link.a
        ),
        format!(
            "fe80::1/128 a default gateway of this machine, via {}",
            link.a
        ),
        "10.66.5.53/32 a DNS resolver of this machine (resolv.conf)".to_string(),
        "10.66.9.9/32 the management address of target edge (host)".to_string(),
        format!("10.66.0.2/32 an address of this machine, on {}", link.a),
    ] {
        let squeezed: Vec<String> = shown
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert!(
            squeezed.iter().any(|l| l.starts_with(&line)),
            "{line:?} not in:\n{shown}"
        );
    }
    assert!(
        shown.contains("[opt out: policy.protect_gateways = false]"),
        "{shown}"
    );

    // The daemon, in the namespace.
    let log = d.join("daemon.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut cmd = host.command(&bins.daemon);
    cmd.arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file);
    let _daemon = host.spawn_command(cmd).unwrap();
    let daemon_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        }),
        "{}",
        daemon_log()
    );
    let client = |args: &[&str]| {
        Command::new(&bins.client)
            .arg("--config")
            .arg(&config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    for (address, reason) in [
        ("10.66.0.1", "a default gateway of this machine"),
        ("fe80::1", "a default gateway of this machine"),
        ("10.66.5.53", "a DNS resolver of this machine"),
        ("10.66.9.9", "the management address of target edge (host)"),
        (
            "10.66.9.0/24",
            "the management address of target edge (host)",
        ),
        ("10.66.0.0/24", "a default gateway of this machine"),
    ] {
        let out = client(&["ban", address, "--source", "sshd", "--bantime", "600"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{address}: {stderr}");
        assert!(
            stderr.contains("never banned") && stderr.contains(reason),
            "{address}: {stderr}"
        );
    }
    // An ordinary ban goes through, to the namespace's own nftables set.
    let out = client(&["ban", "203.0.113.5", "--source", "sshd", "--bantime", "600"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            nft::elements(&host).contains("203.0.113.5")
        }),
        "{:?}\n{}",
        nft::elements(&host),
        daemon_log()
    );
    // Nothing else was recorded or enforced.
    let out = client(&["list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let prefixes: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(prefixes, ["203.0.113.5/32"]);
    assert_eq!(
        nft::elements(&host).into_iter().collect::<Vec<_>>(),
        ["203.0.113.5"]
    );
    // `reload` discovers again and keeps every protection.
    let out = client(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = client(&["ban", "10.66.5.53", "--source", "sshd"]);
    assert_eq!(out.status.code(), Some(1));
    drop(lab);
}
