//! The web console in a real headless Chromium (Debian's, through chromedriver): an admin logs
//! in with a token, sees a ban made with the CLI appear without a reload (pushed by the event
//! stream), unbans it from the page and nftables in the router namespace drops it; a read
//! token sees no form and the API refuses its unban; hostile text is shown, not run; a phone's
//! window shows every view without horizontal scrolling; the daemon stops promptly with the
//! page's event stream open.

use super::api::add_token;
use super::{nftables_target, World};
use netban_testlab::nft::elements as nft_elements;
use netban_testlab::peers::chromium::{Browser, Chromedriver};
use netban_testlab::{free_port, require_netns, wait_until, Edge};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Logs in on the page with `token` and waits until the view is shown and its event stream
/// is connected.
fn log_in(browser: &Browser, token: &str) {
    let field = browser
        .wait_for("#login:not([hidden]) input[name=token]", WAIT)
        .expect("the login form");
    browser.type_into(&field, token);
    browser.click(&browser.find("#login button").expect("the login button"));
    assert!(
        browser.wait_for("body[data-live=on]", WAIT).is_some(),
        "the page's event stream connects: {:?}",
        browser.execute("return document.body.innerText", vec![])
    );
}

fn log_out(browser: &Browser) {
    browser.click(&browser.find("#logout").expect("the logout button"));
    assert!(browser.wait_for("#login:not([hidden])", WAIT).is_some());
}

/// The page's width against its window's, once `ready` (a CSS selector) is there.
fn overflow(browser: &Browser, url: &str, ready: &str) -> (u64, u64) {
    browser.goto(url);
    assert!(browser.wait_for(ready, WAIT).is_some(), "{url}: {ready}");
    let sizes = browser.execute(
        "return [document.scrollingElement.scrollWidth, window.innerWidth]",
        vec![],
    );
    (sizes[0].as_u64().unwrap(), sizes[1].as_u64().unwrap())
}

#[test]
fn the_console_shows_bans_live_and_unbans_them_for_admins_only() {
    require_netns!();
    let world = World::new("ncnui");
    let edge = &world.edge;
    let dir = world.dir.path();
    let port = free_port();
    // Plain HTTP on loopback (what `[api]` allows without TLS); the TLS listener itself is
    // covered by the API's test.
    let config = format!(
        "[api]\nlisten = \"127.0.0.1:{port}\"\ntokens = \"{}\"\nrate_per_second = 1000\n\n{}",
        dir.join("tokens.toml").display(),
        nftables_target(&edge.router)
    );
    let mut daemon = world.daemon(&config);
    assert!(
        wait_until(WAIT, Duration::from_millis(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }),
        "the API listens\n{}",
        daemon.log()
    );
    let admin = add_token(&daemon, "ops", &["--role", "admin"]);
    let reader = add_token(&daemon, "viewer", &["--role", "read"]);
    let base = format!("http://127.0.0.1:{port}");

    let driver = Chromedriver::start();
    let browser = Browser::open(&driver, 1280, 900);
    browser.goto(&format!("{base}/ui/"));
    log_in(&browser, &admin);
    assert!(
        browser.wait_for("#ban-form", WAIT).is_some(),
        "an admin sees the ban form"
    );

    // A ban from the CLI appears on the page without a reload: the marker set in this page's
    // window survives.
    browser.execute("window.ncnSamePage = true; return true", vec![]);
    let attacker = Edge::ATTACKER_V4;
    let hostile = "<img src=x onerror=window.ncnRan=1> & \"quoted\"";
    daemon.client_ok(&["ban", attacker, "--source", "sshd", "--reason", hostile]);
    // Bans are shown by prefix: an address is its /32.
    let prefix = format!("{attacker}/32");
    let row = format!("#bans tr[data-prefix='{prefix}']");
    let shown = browser
        .wait_for(&row, WAIT)
        .unwrap_or_else(|| panic!("the CLI's ban appears live\n{}", daemon.log()));
    assert_eq!(
        browser.execute("return window.ncnSamePage === true", vec![]),
        json!(true),
        "no reload"
    );
    assert!(
        browser.text(&shown).contains("sshd"),
        "{}",
        browser.text(&shown)
    );
    assert!(
        wait_until(WAIT, Duration::from_millis(20), || nft_elements(
            &edge.router
        )
        .contains(attacker)),
        "the CLI's ban reaches nftables"
    );

    // Unban it from the page: the row goes (live again) and nftables drops the element.
    let unban = browser
        .find(&format!("{row} button.unban[data-source='sshd']"))
        .expect("an unban button per source");
    browser.click(&unban);
    assert!(
        wait_until(WAIT, Duration::from_millis(20), || !nft_elements(
            &edge.router
        )
        .contains(attacker)),
        "the page's unban reaches nftables\n{}",
        daemon.log()
    );
    assert!(
        wait_until(WAIT, Duration::from_millis(25), || browser
            .find(&row)
            .is_none()),
        "the row leaves the page"
    );
    let notice = browser.find("#notice").map(|n| browser.text(&n));
    assert_eq!(notice.as_deref(), Some(&*format!("Unbanned {prefix}")));

    // History: the CLI's ban with its reason shown as text, not run; the page's unban named
    // by its token.
    browser.goto(&format!("{base}/ui/history?address={attacker}"));
    // The view is swapped in once the page has the token: wait for its content, not only
    // for an element (an early one goes stale).
    let mut text = String::new();
    let shown = wait_until(WAIT, Duration::from_millis(25), || {
        text = browser
            .find("#history")
            .map(|history| browser.text(&history))
            .unwrap_or_default();
        text.contains(hostile)
    });
    assert!(shown, "the reason is shown as text: {text}");
    assert!(text.contains("api.ops") && text.contains("unban"), "{text}");
    assert_eq!(
        browser.execute("return window.ncnRan === undefined", vec![]),
        json!(true),
        "the reason's markup did not run"
    );

    // Targets: health and counts.
    browser.goto(&format!("{base}/ui/targets"));
    let edge_row = browser
        .wait_for("#targets tr[data-target=edge]", WAIT)
        .expect("the target's row");
    assert!(
        browser
            .find("#targets tr[data-target=edge] .health.ok")
            .is_some(),
        "{}",
        browser.text(&edge_row)
    );

    // A read token: the bans but no form and no unban button; the API refuses its unban.
    log_out(&browser);
    assert_eq!(
        browser.execute("return sessionStorage.length", vec![]),
        json!(0),
        "logging out forgets the token"
    );
    browser.goto(&format!("{base}/ui/bans"));
    log_in(&browser, &reader);
    let second = "203.0.113.66";
    daemon.client_ok(&["ban", second, "--source", "sshd"]);
    let row = format!("#bans tr[data-prefix='{second}/32']");
    assert!(
        browser.wait_for(&row, WAIT).is_some(),
        "the read token sees bans live"
    );
    assert!(
        browser.find("#ban-form").is_none(),
        "no ban form for a read token"
    );
    assert!(
        browser.find("button.unban").is_none(),
        "no unban button for a read token"
    );
    let refused = browser.execute(
        "return fetch('/v1/bans/' + arguments[0] + '?source=sshd', {method: 'DELETE', \
         headers: {Authorization: 'Bearer ' + sessionStorage.getItem('netban-token')}}) \
         .then(r => r.status)",
        vec![Value::from(second)],
    );
    assert_eq!(refused, json!(403), "the API refuses a read token's unban");
    assert!(daemon.listed().contains(&format!("{second}/32")));

    // A phone: every view fits its width (tables stack), with bans and a long error listed.
    browser.set_viewport(390, 844);
    daemon.client_ok(&[
        "ban",
        "2001:db8:a:ffff:ffff:ffff:ffff:7",
        "--source",
        "recidive",
    ]);
    for (url, ready) in [
        (
            format!("{base}/ui/bans"),
            format!("#bans tr[data-prefix='{second}/32']"),
        ),
        (
            format!("{base}/ui/targets"),
            "#targets tr[data-target=edge]".to_string(),
        ),
        (
            format!("{base}/ui/history?address={attacker}"),
            "#history table".to_string(),
        ),
    ] {
        let (width, window) = overflow(&browser, &url, &ready);
        assert!(window <= 390, "{url}: window {window}");
        assert!(
            width <= window,
            "{url}: {width} px wide in a {window} px window"
        );
    }

    // The daemon stops promptly with the page's event stream open.
    assert!(browser.wait_for("body[data-live=on]", WAIT).is_some());
    let pid = daemon.pid().expect("running").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(
        wait_until(WAIT, Duration::from_millis(20), || daemon
            .exited()
            .is_some()),
        "the daemon stops with an event stream open\n{}",
        daemon.log()
    );
}
