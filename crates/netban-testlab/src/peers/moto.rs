//! The test peer of the AWS targets: moto 5.2.5's standalone server (`moto_server`, installed
//! by scripts/setup.d/aws.sh into .venv-aws), one per test on a free loopback port, killed by
//! PID when dropped. Also SDK clients for the tests' own setup and checks, and a credentials
//! file for the driver (moto accepts any credentials unless auth checking is on), and the
//! reads and writes the tests make with those clients: a NACL's entries (netban's range is
//! rules 1-99, the drivers' default), WAF IP sets.

pub use aws_sdk_ec2;
pub use aws_sdk_wafv2;

use crate::{free_port, venv_bin, wait_until};
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use aws_sdk_ec2::types::{Filter, RuleAction};
use aws_sdk_wafv2::types::{IpAddressVersion, Scope as WafScope};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const REGION: &str = "us-east-1";
pub const KEY_ID: &str = "AKIANETBANTEST000001";
pub const SECRET: &str = "netban-test-secret";

pub struct Moto {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
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
        let server = venv_bin("aws", "moto_server");
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

    /// An AWS driver's settings (the keys of its `[[targets]]` table) reaching this server:
    /// `settings` with `region`, `endpoint_url` and a `credentials_file` of the test
    /// credentials added.
    pub fn settings(&self, mut settings: serde_json::Value) -> serde_json::Value {
        let object = settings.as_object_mut().expect("settings are an object");
        object.insert("region".into(), REGION.into());
        object.insert("endpoint_url".into(), self.url().into());
        let credentials = self.credentials_file(KEY_ID, SECRET);
        object.insert(
            "credentials_file".into(),
            credentials.display().to_string().into(),
        );
        settings
    }

    /// A daemon configuration (without `[daemon]`): the NACL `acl`, whose quota was raised to
    /// 40, limited to 20 netban slots, overflowing to a fallback-only nftables target `host`
    /// in the namespace `fallback_netns`. Escalation off.
    pub fn nacl_overflowing_to_nftables(&self, acl: &str, fallback_netns: &str) -> String {
        format!(
            "[policy.escalation]\nenabled = false\n\n\
             [[targets]]\nname = \"vpc\"\ntype = \"aws_nacl\"\nnetwork_acl_id = \"{acl}\"\n\
             region = \"{REGION}\"\nendpoint_url = \"{}\"\ncredentials_file = \"{}\"\n\
             max_rules_v4 = 40\ncapacity_v4 = 20\nfallback = \"host\"\n\n\
             [[targets]]\nname = \"host\"\ntype = \"nftables\"\nnetns = \"{fallback_netns}\"\n\
             fallback_only = true\n",
            self.url(),
            self.credentials_file(KEY_ID, SECRET).display(),
        )
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

// ---- NACL entries and WAF IP sets, read and written with the SDK ---------------------------

/// One NACL entry as a test reads it: (rule, egress, deny, protocol, cidr).
pub type Row = (i32, bool, bool, String, String);

/// Every entry of the NACL, sorted.
pub async fn rows(ec2: &aws_sdk_ec2::Client, acl: &str) -> Vec<Row> {
    let out = ec2
        .describe_network_acls()
        .network_acl_ids(acl)
        .send()
        .await
        .unwrap();
    let mut rows: Vec<Row> = out.network_acls()[0]
        .entries()
        .iter()
        .map(|e| {
            (
                e.rule_number().unwrap(),
                e.egress().unwrap(),
                e.rule_action() == Some(&RuleAction::Deny),
                e.protocol().unwrap_or("").to_string(),
                e.cidr_block()
                    .or(e.ipv6_cidr_block())
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// Ingress entries inside 1..=99 as (rule, cidr), checking they are deny-all entries.
pub async fn netban_rows(ec2: &aws_sdk_ec2::Client, acl: &str) -> Vec<(i32, String)> {
    rows(ec2, acl)
        .await
        .into_iter()
        .filter(|r| !r.1 && (1..=99).contains(&r.0))
        .map(|(rule, _, deny, proto, cidr)| {
            assert!(deny && proto == "-1", "rule {rule} is not deny-all");
            (rule, cidr)
        })
        .collect()
}

/// Every entry outside netban's range (egress ones included): the operator's.
pub async fn operator_rows(ec2: &aws_sdk_ec2::Client, acl: &str) -> Vec<Row> {
    rows(ec2, acl)
        .await
        .into_iter()
        .filter(|r| r.1 || !(1..=99).contains(&r.0))
        .collect()
}

/// The id of the default VPC's default NACL.
pub async fn default_acl(ec2: &aws_sdk_ec2::Client) -> String {
    let out = ec2
        .describe_network_acls()
        .filters(Filter::builder().name("default").values("true").build())
        .send()
        .await
        .unwrap();
    out.network_acls()[0].network_acl_id().unwrap().to_string()
}

/// Adds an ingress entry for every protocol, as an operator would.
pub async fn add_entry(
    ec2: &aws_sdk_ec2::Client,
    acl: &str,
    rule: i32,
    action: RuleAction,
    cidr: &str,
) {
    let call = ec2
        .create_network_acl_entry()
        .network_acl_id(acl)
        .rule_number(rule)
        .protocol("-1")
        .rule_action(action)
        .egress(false);
    let call = if cidr.contains(':') {
        call.ipv6_cidr_block(cidr)
    } else {
        call.cidr_block(cidr)
    };
    call.send().await.unwrap();
}

/// Deletes an ingress entry, as an operator would.
pub async fn delete_entry(ec2: &aws_sdk_ec2::Client, acl: &str, rule: i32) {
    ec2.delete_network_acl_entry()
        .network_acl_id(acl)
        .rule_number(rule)
        .egress(false)
        .send()
        .await
        .unwrap();
}

/// Creates an IP set; returns its id.
pub async fn create_set(
    waf: &aws_sdk_wafv2::Client,
    name: &str,
    v6: bool,
    addresses: Vec<String>,
) -> String {
    let out = waf
        .create_ip_set()
        .name(name)
        .scope(WafScope::Regional)
        .ip_address_version(if v6 {
            IpAddressVersion::Ipv6
        } else {
            IpAddressVersion::Ipv4
        })
        .set_addresses(Some(addresses))
        .description("the operator's set")
        .send()
        .await
        .unwrap();
    out.summary().unwrap().id().unwrap().to_string()
}

/// An IP set's addresses and description.
pub async fn set_addresses(
    waf: &aws_sdk_wafv2::Client,
    name: &str,
    id: &str,
) -> (Vec<String>, Option<String>) {
    let out = waf
        .get_ip_set()
        .name(name)
        .id(id)
        .scope(WafScope::Regional)
        .send()
        .await
        .unwrap();
    let set = out.ip_set().unwrap();
    (
        set.addresses().to_vec(),
        set.description().map(str::to_string),
    )
}

/// Owned copies of `v`.
pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
