//! Secrets never leak: the daemon runs with test secrets (from private files and the
//! environment) against the IOS emulator and a NETCONF port nobody listens on, through start,
//! a refused login, a refused enable, status, plan, sync, check-config, reload and the
//! configuration error paths; everything netban prints (stdout, stderr, its debug log, the
//! JSON status) is collected and searched for the secrets. The good target proves the files
//! are really used: its bans reach the router.

use netban_testlab::netban::Binaries;
use netban_testlab::peers::ios::{Router, PASSWORD, SECRET, USER};
use netban_testlab::wait_until;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The secrets that must never be printed (none of them is the router's real one).
const LEAKS: [&str; 5] = [
    "hs-leak-password-1",
    "hs-leak-enable-1",
    "hs-leak-enable-2",
    "hs-leak-passphrase-1",
    "hs-leak-inline-1",
];

fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Everything one command printed.
fn printed(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn no_secret_is_ever_printed_and_secret_files_are_used() {
    let router = Router::start(&[]);
    let bins = Binaries::locate();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good_pw = secret_file(d, "good.pw", PASSWORD, 0o600);
    let good_enable = secret_file(d, "good.enable", SECRET, 0o400);
    let bad_enable = secret_file(d, "bad.enable", "hs-leak-enable-1", 0o600);
    let wrong_enable = secret_file(d, "wrong.enable", "hs-leak-enable-2", 0o600);
    let passphrase = secret_file(d, "nc.pass", "hs-leak-passphrase-1", 0o600);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let socket = d.join("netban.sock");
    let ios = |name: &str, acl: &str, password: &str, enable: &Path| {
        format!(
            "[[targets]]\nname = \"{name}\"\ntype = \"cisco_ios\"\nhost = \"127.0.0.1\"\n\
             port = {}\nusername = \"{USER}\"\n{password}\nenable_secret_file = \"{}\"\n\
             host_key_fingerprint = \"{}\"\nacl = \"{acl}\"\nacl6 = \"\"\n\
             timeout_secs = 5\n\n",
            router.port,
            enable.display(),
            router.fingerprint
        )
    };
    let config_text = format!(
        "[daemon]\nsocket = \"{}\"\nledger = \"{}\"\n\n\
         [reconciler]\nresync_secs = 600\nretry_min_secs = 1\nretry_max_secs = 2\n\n{}{}{}\
         [[targets]]\nname = \"nc\"\ntype = \"netconf\"\nhost = \"127.0.0.1\"\nport = {closed_port}\n\
         username = \"netban\"\nprivate_key = \"{}\"\nprivate_key_passphrase_file = \"{}\"\n\
         host_key_fingerprint = \"SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\n\
         preset = \"ssr\"\ntenant = \"t\"\nneighborhood = \"n\"\ntimeout_secs = 2\n",
        socket.display(),
        d.join("ledger.db").display(),
        ios(
            "good",
            "HSGOOD",
            &format!("password_file = \"{}\"", good_pw.display()),
            &good_enable
        ),
        ios(
            "badlogin",
            "HSBADLOGIN",
            "password_env = \"HS_LEAK_PASSWORD\"",
            &bad_enable
        ),
        ios(
            "badenable",
            "HSBADENABLE",
            &format!("password_file = \"{}\"", good_pw.display()),
            &wrong_enable
        ),
        d.join("missing_key").display(),
        passphrase.display(),
    );
    // An ordinary, world-readable netban.toml: it holds no secret.
    let config = secret_file(d, "netban.toml", &config_text, 0o644);
    let mut everything = String::new();
    let client = |args: &[&str]| {
        Command::new(&bins.client)
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("HS_LEAK_PASSWORD", "hs-leak-password-1")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };

    // check-config reads every secret (through the client, which execs the daemon).
    let out = client(&["check-config"]);
    assert!(out.status.success(), "{}", printed(&out));
    everything += &printed(&out);

    // The daemon, logging at debug level.
    let log = d.join("daemon.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut daemon = Command::new(&bins.daemon)
        .arg("--config")
        .arg(&config)
        .env("NETBAN_LOG", "debug")
        .env("HS_LEAK_PASSWORD", "hs-leak-password-1")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        }),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let out = client(&["ban", "203.0.113.77", "--source", "sshd"]);
    assert!(out.status.success(), "{}", printed(&out));
    everything += &printed(&out);
    // The good target logs in with the password and enable secret from their files.
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            router
                .show("show ip access-lists HSGOOD")
                .contains("203.0.113.77")
        }),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The three others fail, each with its reason in status.
    let status = || {
        let out = client(&["status", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .map(|v| (v, printed(&out)))
            .unwrap_or_default()
    };
    let error_of = |v: &serde_json::Value, name: &str| {
        v["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["name"] == name)
            .and_then(|t| t["last_error"].as_str().map(str::to_string))
    };
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            let (v, _) = status();
            ["badlogin", "badenable", "nc"]
                .iter()
                .all(|n| error_of(&v, n).is_some())
        }),
        "{:?}\n{}",
        status().0,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let (v, text) = status();
    everything += &text;
    assert!(
        error_of(&v, "badlogin").unwrap().contains("refused user"),
        "{v}"
    );
    assert!(error_of(&v, "badenable").unwrap().contains("enable"), "{v}");
    for args in [
        &["status"][..],
        &["plan"],
        &["plan", "--json"],
        &["sync", "--target", "badlogin"],
        &["list"],
        &["history", "203.0.113.77"],
        &["reload"],
        &["unban", "203.0.113.77"],
    ] {
        everything += &printed(&client(args));
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status();
    daemon.wait().unwrap();
    everything += &std::fs::read_to_string(&log).unwrap();

    // The error paths: a secret file others may read; an inline secret in a netban.toml
    // every user may read; a parse error on the line of an inline secret.
    std::fs::set_permissions(&bad_enable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = client(&["check-config"]);
    assert!(!out.status.success());
    let text = printed(&out);
    assert!(
        text.contains(&bad_enable.display().to_string()) && text.contains("0644"),
        "{text}"
    );
    everything += &text;
    std::fs::set_permissions(&bad_enable, std::fs::Permissions::from_mode(0o600)).unwrap();
    let inline = config_text.replace(
        "password_env = \"HS_LEAK_PASSWORD\"",
        "password = \"hs-leak-inline-1\"",
    );
    std::fs::write(&config, &inline).unwrap();
    let out = client(&["check-config"]);
    let text = printed(&out);
    assert!(
        !out.status.success()
            && text.contains("targets.badlogin.password")
            && text.contains("0644"),
        "{text}"
    );
    everything += &text;
    // The same file readable by its owner only is accepted.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = client(&["check-config"]);
    assert!(out.status.success(), "{}", printed(&out));
    everything += &printed(&out);
    std::fs::write(
        &config,
        inline.replace("\"hs-leak-inline-1\"", "\"hs-leak-inline-1"),
    )
    .unwrap();
    for run in [client(&["check-config"]), client(&["status"])] {
        assert!(!run.status.success());
        everything += &printed(&run);
    }
    let out = Command::new(&bins.daemon)
        .arg("--config")
        .arg(&config)
        .env("NETBAN_LOG", "debug")
        .output()
        .unwrap();
    assert!(!out.status.success());
    everything += &printed(&out);

    assert!(everything.contains("good (cisco_ios)"), "{everything}");
    for secret in LEAKS {
        assert!(
            !everything.contains(secret),
            "{secret} was printed:\n{everything}"
        );
    }
}
