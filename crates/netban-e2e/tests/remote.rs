//! The client's remote mode (`netban --server https://… --token-file F --ca-file CA`) against
//! the real daemon's HTTP API (TLS from a CA made here), nftables enforcing in a router
//! namespace: the same output and exit statuses as the socket path; and token expiry
//! (`netban token add --expires`), refused like a revoked token.

use super::api::{add_token, pki};
use super::{nftables_target, World};
use netban_testlab::nft::elements as nft_elements;
use netban_testlab::{free_port, require_netns, wait_until, Edge};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `token` to a file only its owner may read (the client refuses any other).
fn token_file(dir: &Path, name: &str, token: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn the_client_works_remotely_with_the_socket_paths_output_and_tokens_expire() {
    require_netns!();
    let world = World::new("ncnrm");
    let edge = &world.edge;
    let dir = world.dir.path();
    let pki = pki();
    for (file, text) in [
        ("ca.pem", &pki.ca),
        ("api.crt", &pki.cert),
        ("api.key", &pki.key),
    ] {
        std::fs::write(dir.join(file), text).unwrap();
    }
    let port = free_port();
    let config = format!(
        "[policy]\nprotected = [\"198.18.0.0/24\"]\n\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntokens = \"{}\"\nrate_per_second = 1000\n\n{}",
        dir.join("api.crt").display(),
        dir.join("api.key").display(),
        dir.join("tokens.toml").display(),
        nftables_target(&edge.router)
    );
    let daemon = world.daemon(&config);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }),
        "the API listens\n{}",
        daemon.log()
    );
    let admin = token_file(
        dir,
        "admin.token",
        &add_token(&daemon, "ops", &["--role", "admin"]),
    );
    let unknown = token_file(
        dir,
        "unknown.token",
        "nbt_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    );
    let server = format!("https://127.0.0.1:{port}");
    let ca = dir.join("ca.pem");
    let remote = |token: &Path, args: &[&str]| -> Output {
        let mut all = vec![
            "--server",
            server.as_str(),
            "--token-file",
            token.to_str().unwrap(),
            "--ca-file",
            ca.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        daemon.client(&all)
    };

    // A ban over the API: acknowledged, printed as the socket path prints it, enforced.
    let attacker = Edge::ATTACKER_V4;
    let out = remote(
        &admin,
        &["ban", attacker, "--source", "sshd", "--bantime", "600"],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with(&format!("banned {attacker}/32 until ")),
        "{}",
        text(&out.stdout)
    );
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            nft_elements(&edge.router).contains(attacker)
        }),
        "the remote ban reaches nftables\n{}",
        daemon.log()
    );

    // list, history, plan: the same bytes as over the socket (text and JSON).
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["list", "203.0.113.0/24"],
        &["history", attacker, "--json"],
        &["plan", "--json"],
    ] {
        let over_api = remote(&admin, args);
        let over_socket = daemon.client(args);
        assert_eq!(
            over_api.status.code(),
            over_socket.status.code(),
            "{args:?}"
        );
        assert_eq!(
            text(&over_api.stdout),
            text(&over_socket.stdout),
            "{args:?}: {}",
            text(&over_api.stderr)
        );
    }
    let status = remote(&admin, &["status"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(
        text(&status.stdout).contains("edge"),
        "{}",
        text(&status.stdout)
    );
    let synced = remote(&admin, &["sync"]);
    assert_eq!(
        text(&synced.stdout),
        "synced: edge\n",
        "{}",
        text(&synced.stderr)
    );

    // Refused input: the same message and exit status as the socket path, nothing changed.
    for args in [
        &["ban", "198.18.0.5"][..],
        &["ban", "example.com"],
        &["ban", "10.0.0.0/8"],
        &["ban", "203.0.113.9", "--source", "a;b"],
    ] {
        let over_api = remote(&admin, args);
        let over_socket = daemon.client(args);
        assert!(!over_api.status.success(), "{args:?}");
        assert_eq!(
            over_api.status.code(),
            over_socket.status.code(),
            "{args:?}"
        );
        assert_eq!(
            text(&over_api.stderr),
            text(&over_socket.stderr),
            "{args:?}"
        );
        assert_eq!(
            text(&over_api.stdout),
            text(&over_socket.stdout),
            "{args:?}"
        );
    }
    assert_eq!(daemon.listed(), vec![format!("{attacker}/32")]);

    // A bad token: a clear error, non-zero, nothing changed.
    let out = remote(&unknown, &["ban", "203.0.113.9"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("refused the token") && stderr.contains("unknown or revoked token"),
        "{stderr}"
    );
    // A token file others may read is refused before anything is sent.
    let loose = dir.join("loose.token");
    std::fs::copy(&admin, &loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = remote(&loose, &["list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("chmod 600"),
        "{}",
        text(&out.stderr)
    );
    // No server there: exit status 3, as when the daemon's socket is not there.
    let nobody = format!("https://127.0.0.1:{}", free_port());
    let out = daemon.client(&[
        "--server",
        &nobody,
        "--token-file",
        admin.to_str().unwrap(),
        "--ca-file",
        ca.to_str().unwrap(),
        "list",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot reach"),
        "{}",
        text(&out.stderr)
    );
    // Without the private CA the server's certificate is not trusted: no answer, exit 3.
    let out = daemon.client(&[
        "--server",
        &server,
        "--token-file",
        admin.to_str().unwrap(),
        "list",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    // Plain http to a non-loopback address is refused before anything is sent.
    let out = daemon.client(&[
        "--server",
        "http://198.51.100.10:8440",
        "--token-file",
        admin.to_str().unwrap(),
        "list",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("in clear"),
        "{}",
        text(&out.stderr)
    );

    // Token expiry: works until then, refused (401) afterwards like a revoked token; `token
    // list` shows it.
    let soon = token_file(
        dir,
        "soon.token",
        &add_token(&daemon, "soon", &["--role", "read", "--expires", "4s"]),
    );
    add_token(&daemon, "month", &["--role", "read", "--expires", "30d"]);
    let in_time = remote(&soon, &["list"]);
    assert!(in_time.status.success(), "{}", text(&in_time.stderr));
    let mut refused = String::new();
    assert!(
        wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
            let out = remote(&soon, &["list"]);
            refused = text(&out.stderr);
            out.status.code() == Some(1)
        }),
        "the expired token is refused"
    );
    assert!(
        refused.contains("refused the token") && refused.contains("expired token"),
        "{refused}"
    );
    let listed = text(&daemon.client_ok(&["token", "list"]).stdout);
    let line = |name: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("soon").contains("EXPIRED="), "{listed}");
    assert!(line("month").contains("expires=20"), "{listed}");
    assert!(line("ops").contains("expires=never"), "{listed}");
    let out = daemon.client(&["token", "add", "late", "--expires", "2020-01-01T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("in the past"),
        "{}",
        text(&out.stderr)
    );

    // The unban over the API lifts it from nftables.
    let out = remote(&admin, &["unban", attacker, "--source", "sshd"]);
    assert_eq!(
        text(&out.stdout),
        format!("unbanned {attacker}/32\n"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            !nft_elements(&edge.router).contains(attacker)
        }),
        "the remote unban reaches nftables"
    );
    // And history names the token as the origin of both.
    let history = text(&remote(&admin, &["history", attacker]).stdout);
    assert_eq!(history.matches("api.ops").count(), 2, "{history}");
}
