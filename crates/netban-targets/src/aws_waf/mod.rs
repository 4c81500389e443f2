//! AWS WAFv2 IP set target: banned prefixes as addresses of one IP set per family.
//!
//! The IP sets are shared with the operator (and other tools): netban removes only the
//! entries it recorded adding ([`OwnershipKind::Recorded`]). UpdateIPSet replaces the whole
//! list, so each write reads the set (GetIPSet: list and LockToken), merges netban's changes
//! into it ([`merge`]) and writes it back with that token. If someone else wrote in between,
//! AWS answers WAFOptimisticLockException and the driver reads, merges and writes again.
//!
//! Writes are paced to at most one per `min_write_interval_ms` per set (AWS allows about one
//! per second): changes that arrive meanwhile pile up in the reconciler and go out together
//! in the next write, so a burst of 1,000 bans is a handful of writes.
//!
//! Capacity: `max_addresses` per set (AWS: 10,000), foreign entries included; an add that
//! does not fit fails and is retried when room frees. IP sets have no expiry: netban removes
//! entries when bans end.
//!
//! Not for: creating IP sets or attaching them to web ACL rules (the operator does that once).

mod config;
mod merge;

pub use config::{AwsWafConfig, IpSetRef, WafScope, MAX_ADDRESSES};
pub use merge::{merge, Merged};

use crate::aws_access::{classify, ApiError};
use crate::{
    ApplyReport, ItemOutcome, ItemReport, OnDevice, OwnershipKind, Step, Target, TargetError,
    TargetInfo,
};
use async_trait::async_trait;
use aws_sdk_wafv2::types::IpAddressVersion;
use aws_sdk_wafv2::Client;
use netban_core::placement::Capacity;
use netban_core::plan::{ExpiryTracking, Held, Plan, SourceTracking};
use netban_core::{Family, Prefix};
use std::time::Duration;
use tokio::time::Instant;

/// Items per apply: one apply is at most one write per set.
pub const MAX_BATCH: usize = 20_000;

/// Read-merge-write rounds before giving up on a set that keeps changing under netban.
const LOCK_ATTEMPTS: u32 = 5;

/// One IP set as read: its list, the token to write it back, and its description (kept).
struct SetState {
    addresses: Vec<String>,
    lock_token: String,
    description: Option<String>,
}

/// The AWS WAFv2 IP set driver. Built from configuration without contacting AWS.
pub struct AwsWaf {
    info: TargetInfo,
    config: AwsWafConfig,
    client: Option<Client>,
    /// When each family's set was last written (for pacing).
    last_write: [Option<Instant>; 2],
    lock_conflicts: u64,
    writes: u64,
}

fn slot(family: Family) -> usize {
    match family {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

impl AwsWaf {
    pub fn new(name: &str, config: AwsWafConfig) -> Result<Self, TargetError> {
        let config = config.validated(name)?;
        let sets = config.sets();
        let max = Some(config.max_addresses);
        let has = |f: Family| sets.iter().any(|(g, _)| *g == f);
        let info = TargetInfo {
            name: name.to_string(),
            kind: AwsWafConfig::KIND,
            families: sets.iter().map(|(f, _)| *f).collect(),
            capacity: Capacity {
                v4: if has(Family::V4) { max } else { Some(0) },
                v6: if has(Family::V6) { max } else { Some(0) },
            },
            ownership: OwnershipKind::Recorded,
            expiry: ExpiryTracking::None,
            sources: SourceTracking::Ignored,
            max_batch: MAX_BATCH,
        };
        Ok(AwsWaf {
            info,
            config,
            client: None,
            last_write: [None, None],
            lock_conflicts: 0,
            writes: 0,
        })
    }

    pub fn config(&self) -> &AwsWafConfig {
        &self.config
    }

    /// How many writes met WAFOptimisticLockException and were redone.
    pub fn lock_conflicts(&self) -> u64 {
        self.lock_conflicts
    }

    /// How many UpdateIPSet calls succeeded.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    fn label(&self) -> String {
        format!("aws_waf {}", self.info.name)
    }

    fn client(&self) -> Result<&Client, TargetError> {
        self.client
            .as_ref()
            .ok_or_else(|| TargetError::device(format!("{}: used before prepare", self.label())))
    }

    fn scope(&self) -> aws_sdk_wafv2::types::Scope {
        match self.config.waf_scope {
            WafScope::Regional => aws_sdk_wafv2::types::Scope::Regional,
            WafScope::Cloudfront => aws_sdk_wafv2::types::Scope::Cloudfront,
        }
    }

    fn set_of(&self, family: Family) -> Option<IpSetRef> {
        match family {
            Family::V4 => self.config.ipset_v4.clone(),
            Family::V6 => self.config.ipset_v6.clone(),
        }
    }

    async fn get(&self, family: Family, set: &IpSetRef) -> Result<SetState, TargetError> {
        let out = self
            .client()?
            .get_ip_set()
            .name(&set.name)
            .id(&set.id)
            .scope(self.scope())
            .send()
            .await
            .map_err(|e| match classify("wafv2:GetIPSet", &e) {
                ApiError::Service { code, message } if code == "WAFNonexistentItemException" => {
                    TargetError::config(format!(
                        "{}: IP set {:?} (id {}) not found in scope {:?} ({message}); fix \
                         ipset_{} or waf_scope/region",
                        self.label(),
                        set.name,
                        set.id,
                        self.config.waf_scope,
                        family_key(family)
                    ))
                }
                other => other.into_target_error(&self.label()),
            })?;
        let (Some(ip_set), Some(lock_token)) = (out.ip_set(), out.lock_token()) else {
            return Err(TargetError::device(format!(
                "{}: GetIPSet for {:?} answered without the set or its lock token",
                self.label(),
                set.name
            )));
        };
        let want = match family {
            Family::V4 => IpAddressVersion::Ipv4,
            Family::V6 => IpAddressVersion::Ipv6,
        };
        if *ip_set.ip_address_version() != want {
            return Err(TargetError::config(format!(
                "{}: IP set {:?} holds {} addresses but is configured as ipset_{}",
                self.label(),
                set.name,
                ip_set.ip_address_version().as_str(),
                family_key(family)
            )));
        }
        Ok(SetState {
            addresses: ip_set.addresses().to_vec(),
            lock_token: lock_token.to_string(),
            description: ip_set.description().map(str::to_string),
        })
    }

    /// Waits until this set may be written again.
    async fn pace(&self, family: Family) {
        let interval = Duration::from_millis(self.config.min_write_interval_ms);
        if let Some(last) = self.last_write[slot(family)] {
            tokio::time::sleep_until(last + interval).await;
        }
    }

    /// Read, merge, write one set, redoing it on lock conflicts. Returns per-item results.
    async fn write_set(
        &mut self,
        family: Family,
        set: &IpSetRef,
        remove: &[Prefix],
        add: &[Prefix],
    ) -> Result<Vec<(Prefix, Step, ItemOutcome)>, TargetError> {
        let mut last_error = String::new();
        for _ in 0..LOCK_ATTEMPTS {
            self.pace(family).await;
            let state = self.get(family, set).await?;
            let merged = merge(&state.addresses, remove, add, self.config.max_addresses);
            if !merged.changed {
                return Ok(merged.results);
            }
            let sent = self
                .client()?
                .update_ip_set()
                .name(&set.name)
                .id(&set.id)
                .scope(self.scope())
                .set_addresses(Some(merged.addresses))
                .set_description(state.description)
                .lock_token(state.lock_token)
                .send()
                .await;
            self.last_write[slot(family)] = Some(Instant::now());
            match sent {
                Ok(_) => {
                    self.writes += 1;
                    return Ok(merged.results);
                }
                Err(e) => match classify("wafv2:UpdateIPSet", &e) {
                    ApiError::Service { code, message } if code == "WAFOptimisticLockException" => {
                        self.lock_conflicts += 1;
                        last_error = format!("{code}: {message}");
                    }
                    e if e.is_fatal() => return Err(e.into_target_error(&self.label())),
                    e => {
                        return Ok(fail_all(remove, add, &e.to_string()));
                    }
                },
            }
        }
        Ok(fail_all(
            remove,
            add,
            &format!(
                "the IP set kept changing under netban ({LOCK_ATTEMPTS} tries; last: {last_error})"
            ),
        ))
    }
}

fn family_key(family: Family) -> &'static str {
    match family {
        Family::V4 => "v4",
        Family::V6 => "v6",
    }
}

fn fail_all(remove: &[Prefix], add: &[Prefix], reason: &str) -> Vec<(Prefix, Step, ItemOutcome)> {
    let failed = || ItemOutcome::Failed {
        reason: reason.to_string(),
    };
    remove
        .iter()
        .map(|p| (*p, Step::Remove, failed()))
        .chain(add.iter().map(|p| (*p, Step::Add, failed())))
        .collect()
}

#[async_trait]
impl Target for AwsWaf {
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
        for (family, set) in self.config.sets() {
            self.get(family, set).await?;
        }
        Ok(())
    }

    async fn observe(&mut self) -> Result<Vec<Held>, TargetError> {
        let mut held = Vec::new();
        for (family, set) in self.config.sets() {
            let state = self.get(family, set).await?;
            held.extend(
                merge::held(&state.addresses)
                    .into_iter()
                    .filter(|h| h.prefix.family() == family),
            );
        }
        Ok(held)
    }

    async fn apply(&mut self, plan: &Plan) -> Result<ApplyReport, TargetError> {
        let mut report = ApplyReport::default();
        for family in [Family::V4, Family::V6] {
            let remove: Vec<Prefix> = plan
                .remove
                .iter()
                .map(|h| h.prefix)
                .filter(|p| p.family() == family)
                .collect();
            let add: Vec<Prefix> = plan
                .add
                .iter()
                .map(|d| d.prefix)
                .filter(|p| p.family() == family)
                .collect();
            if remove.is_empty() && add.is_empty() {
                continue;
            }
            let results = match self.set_of(family) {
                Some(set) => self.write_set(family, &set, &remove, &add).await?,
                None => fail_all(&remove, &add, "no IP set is configured for this family"),
            };
            report.items.extend(
                results
                    .into_iter()
                    .map(|(prefix, step, result)| ItemReport {
                        prefix,
                        step,
                        result,
                    }),
            );
        }
        // IP set entries have no expiry: a refresh has nothing to change.
        for (held, _) in &plan.refresh {
            report.items.push(ItemReport {
                prefix: held.prefix,
                step: Step::Refresh,
                result: ItemOutcome::Done {
                    held: Some(held.clone()),
                },
            });
        }
        Ok(report)
    }
}
