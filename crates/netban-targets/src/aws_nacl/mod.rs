//! AWS VPC Network ACL target: ingress deny entries (all protocols) for banned prefixes, in a
//! range of rule numbers netban owns below the operator's allow rules.
//!
//! ```text
//! rule   1.. 99   deny  -1  203.0.113.7/32      ← netban (rule_range), lowest free number
//! rule   2        deny  -1  2001:db8:a::7/128   ← IPv4 and IPv6 share the numbers
//! rule 100        allow -1  0.0.0.0/0           ← the operator's; never touched
//! rule   *        deny  -1  0.0.0.0/0
//! ```
//!
//! Which NACL: `network_acl_id`, or the one associated with `subnet_id`, or the one of this
//! instance's subnet found through IMDSv2 ([`imds`]). Everything inside `rule_range` on the
//! ingress side is netban's ([`OwnershipKind::Exclusive`]); everything outside is never
//! touched, and an operator rule below the range (which would override netban's denies) or a
//! foreign entry inside it is a configuration error.
//!
//! Rule numbers are never kept from memory: `observe` and every `apply` re-read the NACL
//! (DescribeNetworkAcls), and each entry's rule number is its [`Held::handle`]. An add takes
//! the lowest free number; if someone takes it first (NetworkAclEntryAlreadyExists) the next
//! one is tried.
//!
//! Capacity: a NACL holds 20 ingress rules per family (40 after a quota raise), the
//! operator's own included. The driver announces `max_rules - reserved` per family as its
//! capacity; netban's placement (`netban_core::placement`) decides which bans get the slots
//! and sends the rest to the target's `fallback`. A NACL has no expiry of its own: netban
//! removes entries when bans end.
//!
//! Not for: egress rules, security groups, or choosing which bans to hold.

mod config;
mod entries;
mod imds;

pub use config::{AwsNaclConfig, MAX_RULES_QUOTA, MAX_RULE_NUMBER};
pub use entries::{AclView, Conflict, Entry};

use crate::aws_access::{classify, ApiError};
use crate::{
    ApplyReport, ItemOutcome, ItemReport, OnDevice, OwnershipKind, Step, Target, TargetError,
    TargetInfo,
};
use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, RuleAction};
use aws_sdk_ec2::Client;
use netban_core::plan::{ExpiryTracking, Held, Plan, SourceTracking};
use netban_core::{Family, Prefix};

/// Items per apply: each is one API call, so a batch stays short.
pub const MAX_BATCH: usize = 50;

/// How many rule numbers an add tries when others take them first.
const ALLOCATION_ATTEMPTS: usize = 5;

/// The AWS Network ACL driver. Built from configuration without contacting AWS; `prepare`
/// loads credentials, finds the NACL and checks it.
pub struct AwsNacl {
    info: TargetInfo,
    config: AwsNaclConfig,
    client: Option<Client>,
    acl_id: Option<String>,
}

impl AwsNacl {
    pub fn new(name: &str, config: AwsNaclConfig) -> Result<Self, TargetError> {
        let config = config.validated(name)?;
        let info = TargetInfo {
            name: name.to_string(),
            kind: AwsNaclConfig::KIND,
            families: vec![Family::V4, Family::V6],
            capacity: config.capacity(),
            ownership: OwnershipKind::Exclusive,
            expiry: ExpiryTracking::None,
            sources: SourceTracking::Ignored,
            max_batch: MAX_BATCH,
        };
        Ok(AwsNacl {
            info,
            config,
            client: None,
            acl_id: None,
        })
    }

    pub fn config(&self) -> &AwsNaclConfig {
        &self.config
    }

    /// The NACL netban works in, once `prepare` has found it.
    pub fn network_acl_id(&self) -> Option<&str> {
        self.acl_id.as_deref()
    }

    fn label(&self) -> String {
        format!("aws_nacl {}", self.info.name)
    }

    fn api_error(&self, e: ApiError) -> TargetError {
        e.into_target_error(&self.label())
    }

    fn ready(&self) -> Result<(&Client, &str), TargetError> {
        match (&self.client, &self.acl_id) {
            (Some(c), Some(id)) => Ok((c, id)),
            _ => Err(TargetError::device(format!(
                "{}: used before prepare",
                self.label()
            ))),
        }
    }

    /// Which NACL: configured, by subnet, or by this instance's subnet (IMDSv2).
    async fn find_acl(&self, client: &Client) -> Result<String, TargetError> {
        if let Some(id) = &self.config.network_acl_id {
            return Ok(id.clone());
        }
        let subnet = match &self.config.subnet_id {
            Some(s) => s.clone(),
            None => {
                let s = imds::this_instance_subnet(&self.config.imds_endpoint).await?;
                if !config::is_resource_id(&s, "subnet-") {
                    return Err(TargetError::device(format!(
                        "{}: instance metadata gave {s:?} as the subnet id",
                        self.label()
                    )));
                }
                s
            }
        };
        let out = client
            .describe_network_acls()
            .filters(
                Filter::builder()
                    .name("association.subnet-id")
                    .values(&subnet)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.api_error(classify("ec2:DescribeNetworkAcls", &e)))?;
        out.network_acls()
            .iter()
            .find_map(|acl| acl.network_acl_id())
            .map(str::to_string)
            .ok_or_else(|| {
                TargetError::config(format!(
                    "{}: no network ACL is associated with subnet {subnet}; set network_acl_id",
                    self.label()
                ))
            })
    }

    /// Reads the NACL's entries and checks them against the configuration.
    async fn read(&self) -> Result<AclView, TargetError> {
        let (client, acl) = self.ready()?;
        let out = client
            .describe_network_acls()
            .network_acl_ids(acl)
            .send()
            .await
            .map_err(|e| match classify("ec2:DescribeNetworkAcls", &e) {
                // moto 5.2.5 says InvalidRouteTableID.NotFound for an unknown NACL id.
                ApiError::Service { code, .. } if code.ends_with(".NotFound") => {
                    TargetError::config(format!(
                        "{}: network ACL {acl} does not exist in this region/account ({code}); \
                         fix network_acl_id, subnet_id or region",
                        self.label()
                    ))
                }
                other => self.api_error(other),
            })?;
        let Some(found) = out
            .network_acls()
            .iter()
            .find(|a| a.network_acl_id() == Some(acl))
        else {
            return Err(TargetError::config(format!(
                "{}: network ACL {acl} was not found; fix network_acl_id, subnet_id or region",
                self.label()
            )));
        };
        let entries: Vec<Entry> = found
            .entries()
            .iter()
            .map(|e| Entry {
                rule_number: e.rule_number().unwrap_or(0),
                egress: e.egress().unwrap_or(false),
                deny: e.rule_action() == Some(&RuleAction::Deny),
                protocol: e.protocol().unwrap_or("").to_string(),
                cidr_v4: e.cidr_block().map(str::to_string),
                cidr_v6: e.ipv6_cidr_block().map(str::to_string),
            })
            .collect();
        let conflict = |c: Conflict| {
            TargetError::config(OnDevice::new(
                format!("{}: network ACL {acl}", self.label()),
                c,
            ))
        };
        let view = AclView::read(&entries, &self.config.range()).map_err(conflict)?;
        view.check_reserved(self.config.reserved_v4, self.config.reserved_v6)
            .map_err(conflict)?;
        Ok(view)
    }

    async fn create(&self, rule: u16, prefix: &Prefix) -> Result<(), ApiError> {
        let (client, acl) = self.ready().expect("checked by apply");
        let mut call = client
            .create_network_acl_entry()
            .network_acl_id(acl)
            .rule_number(i32::from(rule))
            .protocol("-1")
            .rule_action(RuleAction::Deny)
            .egress(false);
        // Rendered only from the parsed prefix.
        call = match prefix.family() {
            Family::V4 => call.cidr_block(prefix.to_string()),
            Family::V6 => call.ipv6_cidr_block(prefix.to_string()),
        };
        call.send()
            .await
            .map(|_| ())
            .map_err(|e| classify("ec2:CreateNetworkAclEntry", &e))
    }

    async fn delete(&self, rule: u16) -> Result<(), ApiError> {
        let (client, acl) = self.ready().expect("checked by apply");
        client
            .delete_network_acl_entry()
            .network_acl_id(acl)
            .rule_number(i32::from(rule))
            .egress(false)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("ec2:DeleteNetworkAclEntry", &e))
    }

    /// Adds one entry for `prefix` at the lowest free rule number.
    async fn add(&self, view: &mut AclView, prefix: Prefix) -> Result<ItemOutcome, ApiError> {
        if let Some(rule) = view.rule_of(&prefix) {
            return Ok(done(prefix, rule));
        }
        let range = self.config.range();
        for _ in 0..ALLOCATION_ATTEMPTS {
            let Some(rule) = view.free_rule(&range) else {
                return Ok(ItemOutcome::Failed {
                    reason: format!(
                        "no free rule number in rule_range {}..{}",
                        range.start(),
                        range.end()
                    ),
                });
            };
            match self.create(rule, &prefix).await {
                Ok(()) => {
                    view.record_added(rule, prefix);
                    return Ok(done(prefix, rule));
                }
                // Taken by someone else since the NACL was read: try the next number.
                Err(e) if e.code() == Some("NetworkAclEntryAlreadyExists") => {
                    view.used.insert(i32::from(rule));
                }
                Err(e) if e.code() == Some("NetworkAclEntryLimitExceeded") => {
                    return Ok(ItemOutcome::Failed {
                        reason: format!(
                            "the NACL's rule quota is full ({e}); check max_rules_v4/v6 and \
                             reserved_v4/v6 against the NACL"
                        ),
                    })
                }
                Err(e) if e.code().is_some_and(|c| c.starts_with("Invalid")) => {
                    return Ok(ItemOutcome::Rejected {
                        reason: e.to_string(),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        Ok(ItemOutcome::Failed {
            reason: format!(
                "rule numbers kept being taken by someone else ({ALLOCATION_ATTEMPTS} tries)"
            ),
        })
    }
}

fn done(prefix: Prefix, rule: u16) -> ItemOutcome {
    ItemOutcome::Done {
        held: Some(Held {
            prefix,
            expiry: None,
            handle: Some(rule.to_string()),
        }),
    }
}

#[async_trait]
impl Target for AwsNacl {
    fn info(&self) -> &TargetInfo {
        &self.info
    }

    async fn prepare(&mut self) -> Result<(), TargetError> {
        if self.client.is_none() {
            let sdk = self.config.access().load().await.map_err(|e| match e {
                TargetError::Config(m) => TargetError::config(OnDevice::new(self.label(), m)),
                other => other,
            })?;
            self.client = Some(Client::new(&sdk));
        }
        if self.acl_id.is_none() {
            let client = self.client.clone().expect("set above");
            self.acl_id = Some(self.find_acl(&client).await?);
        }
        self.read().await.map(|_| ())
    }

    async fn observe(&mut self) -> Result<Vec<Held>, TargetError> {
        Ok(self.read().await?.held())
    }

    async fn apply(&mut self, plan: &Plan) -> Result<ApplyReport, TargetError> {
        let mut view = self.read().await?;
        let mut report = ApplyReport::default();
        // Once AWS throttles past the SDK's retries, the rest of the batch waits for the
        // reconciler's backoff rather than pressing on.
        let mut throttled: Option<String> = None;
        let mut push = |prefix: Prefix, step: Step, result: ItemOutcome| {
            report.items.push(ItemReport {
                prefix,
                step,
                result,
            })
        };
        for held in &plan.remove {
            if let Some(reason) = &throttled {
                push(held.prefix, Step::Remove, failed(reason));
                continue;
            }
            let rule = held.handle.as_deref().and_then(|h| h.parse::<u16>().ok());
            let result = match rule {
                Some(rule) if view.owned.get(&rule) == Some(&held.prefix) => {
                    match self.delete(rule).await {
                        Ok(()) => {
                            view.record_removed(rule);
                            ItemOutcome::Done { held: None }
                        }
                        Err(e) if e.is_fatal() => return Err(self.api_error(e)),
                        Err(e @ ApiError::Throttled { .. }) => {
                            throttled = Some(e.to_string());
                            failed(&e.to_string())
                        }
                        Err(e) => failed(&e.to_string()),
                    }
                }
                // Not at that number any more (deleted or renumbered behind netban's back):
                // nothing to delete there; the next resync sees where it went.
                _ => ItemOutcome::Done { held: None },
            };
            push(held.prefix, Step::Remove, result);
        }
        for desired in &plan.add {
            if let Some(reason) = &throttled {
                push(desired.prefix, Step::Add, failed(reason));
                continue;
            }
            let result = match self.add(&mut view, desired.prefix).await {
                Ok(result) => result,
                Err(e) if e.is_fatal() => return Err(self.api_error(e)),
                Err(e @ ApiError::Throttled { .. }) => {
                    throttled = Some(e.to_string());
                    failed(&e.to_string())
                }
                Err(e) => failed(&e.to_string()),
            };
            push(desired.prefix, Step::Add, result);
        }
        // A NACL entry has no expiry: a refresh has nothing to change.
        for (held, _) in &plan.refresh {
            push(
                held.prefix,
                Step::Refresh,
                ItemOutcome::Done {
                    held: Some(held.clone()),
                },
            );
        }
        Ok(report)
    }
}

fn failed(reason: &str) -> ItemOutcome {
    ItemOutcome::Failed {
        reason: reason.to_string(),
    }
}
