//! Debian's headless Chromium, driven through WebDriver by `chromedriver` (both from
//! scripts/setup.d/console.sh), for the web console's test. A few plain WebDriver calls over
//! reqwest (already in the tree) rather than a WebDriver crate: the test needs sessions,
//! navigation, elements, clicks, typing and script execution, nothing more.
//!
//! Chromium runs as root here, so `--no-sandbox`; headless, since there is no display. Every
//! request that is not to a loopback address goes to a proxy that is not there
//! (`127.0.0.1:9`), and its background services are off: the browser never reaches past
//! loopback. `chromedriver` listens on a free loopback port and is killed by PID on drop; a
//! [`Browser`] session ends (and its Chromium with it) when dropped.

use crate::{free_port, wait_until};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running chromedriver.
pub struct Chromedriver {
    child: Child,
    base: String,
    log: tempfile::NamedTempFile,
}

impl Chromedriver {
    /// Starts chromedriver and waits (bounded) until it says it is ready.
    pub fn start() -> Chromedriver {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("chromedriver log");
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (install it with scripts/setup.d/console.sh)");
        let driver = Chromedriver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let client = Client::new();
        let ready = wait_until(Duration::from_secs(20), Duration::from_millis(25), || {
            client
                .send("GET", &format!("{}/status", driver.base), None)
                .is_ok_and(|v| v["value"]["ready"] == true)
        });
        assert!(ready, "chromedriver is not ready\n{}", driver.log());
        driver
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP client of chromedriver's JSON.
struct Client {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Client {
    fn new() -> Client {
        Client {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("HTTP client"),
        }
    }

    fn send(&self, method: &str, url: &str, body: Option<Value>) -> Result<Value, String> {
        self.runtime.block_on(async {
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let mut request = self.http.request(method, url);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            let value: Value = response.json().await.map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(value)
            } else {
                Err(format!("{status}: {}", value["value"]))
            }
        })
    }
}

/// One browser session (one headless Chromium).
pub struct Browser {
    client: Client,
    session: String,
}

/// An element of the current page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Opens a session with a window of `width`×`height` CSS pixels.
    pub fn open(driver: &Chromedriver, width: u32, height: u32) -> Browser {
        let client = Client::new();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-domain-reliability",
            "--metrics-recording-only",
            "--no-pings",
            "--proxy-server=http://127.0.0.1:9",
            "--proxy-bypass-list=127.0.0.1;localhost;[::1]",
            &format!("--window-size={width},{height}"),
        ];
        let answer = client
            .send(
                "POST",
                &format!("{}/session", driver.base),
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"args": args}
                }}})),
            )
            .unwrap_or_else(|e| panic!("no browser session: {e}\n{}", driver.log()));
        let session = answer["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        Browser {
            client,
            session: format!("{}/session/{session}", driver.base),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        self.client
            .send(method, &format!("{}{path}", self.session), body)
            .map(|mut v| v["value"].take())
    }

    /// Sets the viewport (the inner window) to `width`×`height` CSS pixels.
    pub fn set_viewport(&self, width: u32, height: u32) {
        // The window rectangle includes nothing around the viewport in headless mode, but
        // measure and correct rather than assume.
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .expect("window size");
        let inner = self.execute("return [window.innerWidth, window.innerHeight]", vec![]);
        let (w, h) = (
            inner[0].as_u64().unwrap_or(0) as i64,
            inner[1].as_u64().unwrap_or(0) as i64,
        );
        if (w, h) != (i64::from(width), i64::from(height)) {
            self.call(
                "POST",
                "/window/rect",
                Some(json!({
                    "width": 2 * i64::from(width) - w,
                    "height": 2 * i64::from(height) - h
                })),
            )
            .expect("window size");
        }
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })))
            .unwrap_or_else(|e| panic!("navigating to {url}: {e}"));
    }

    /// The first element matching a CSS selector, if any.
    pub fn find(&self, css: &str) -> Option<Element> {
        self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )
        .ok()
        .and_then(|v| v[ELEMENT].as_str().map(|id| Element(id.to_string())))
    }

    /// Waits (bounded) for an element matching `css`.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Option<Element> {
        let mut found = None;
        wait_until(timeout, Duration::from_millis(25), || {
            found = self.find(css);
            found.is_some()
        });
        found
    }

    pub fn click(&self, element: &Element) {
        self.call(
            "POST",
            &format!("/element/{}/click", element.0),
            Some(json!({})),
        )
        .unwrap_or_else(|e| panic!("clicking: {e}"));
    }

    /// Types `text` into an input (after what it holds).
    pub fn type_into(&self, element: &Element, text: &str) {
        self.call(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(json!({ "text": text })),
        )
        .unwrap_or_else(|e| panic!("typing: {e}"));
    }

    pub fn clear(&self, element: &Element) {
        self.call(
            "POST",
            &format!("/element/{}/clear", element.0),
            Some(json!({})),
        )
        .unwrap_or_else(|e| panic!("clearing: {e}"));
    }

    /// The element's rendered text.
    pub fn text(&self, element: &Element) -> String {
        self.call("GET", &format!("/element/{}/text", element.0), None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; its return value.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.client.send("DELETE", &self.session, None);
    }
}
