//! The test peer of the AWS targets: moto 5.2.5's standalone server (`moto_server`, installed
//! by scripts/setup.d/aws.sh into .venv-aws), one per test on a free loopback port, killed by
//! PID when dropped. Also SDK clients for the tests' own setup and checks, and a credentials
//! file for the driver (moto accepts any credentials unless auth checking is on).

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use netban_testlab::wait_until;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const VENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv-aws");
pub const REGION: &str = "us-east-1";
pub const KEY_ID: &str = "AKIANETBANTEST000001";
pub const SECRET: &str = "netban-test-secret";

pub struct Moto {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Moto {
    /// A moto server that accepts any credentials.
    pub fn start() -> Moto {
        Moto::spawn(None)
    }

    /// A moto server that checks signatures and IAM policies after the first `free` actions.
    pub fn start_with_auth(free: u32) -> Moto {
        Moto::spawn(Some(free))
    }

    fn spawn(auth_after: Option<u32>) -> Moto {
        let server = Path::new(VENV).join("bin/moto_server");
        assert!(
            server.exists(),
            "{} missing: run scripts/setup.d/aws.sh (or scripts/setup.sh)",
            server.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("log");
        let mut cmd = Command::new(&server);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(n) = auth_after {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let child = cmd.spawn().expect("start moto_server");
        let moto = Moto { child, port, dir };
        let ready = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            moto.post("/moto-api/reset")
                .is_some_and(|status| status == 200)
        });
        assert!(ready, "moto_server did not answer:\n{}", moto.log());
        moto
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// POSTs to a moto control path; returns the HTTP status.
    pub fn post(&self, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        )
        .ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        answer.split_whitespace().nth(1)?.parse().ok()
    }

    /// Forgets every resource (moto's own reset API).
    pub fn reset(&self) {
        assert_eq!(self.post("/moto-api/reset"), Some(200));
    }

    /// A shared-credentials file for the driver with `key`/`secret` as the default profile.
    pub fn credentials_file(&self, key: &str, secret: &str) -> PathBuf {
        let path = self.dir.path().join(format!("credentials-{key}"));
        std::fs::write(
            &path,
            format!("[default]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"),
        )
        .unwrap();
        path
    }

    /// The test's own client configuration: moto's endpoint, its test credentials.
    fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.url())
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "netban-test",
            )))
            .build()
    }

    /// The test's own EC2 client (for setup and for checking what netban did).
    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config())
    }

    pub fn waf(&self) -> aws_sdk_wafv2::Client {
        aws_sdk_wafv2::Client::new(&self.sdk_config())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
