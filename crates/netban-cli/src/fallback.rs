//! When the daemon is down: record bans and unbans directly in the ledger, under the same
//! policy, so fail2ban's ban is durable now and enforced when the daemon starts (the daemon
//! loads every active ban and picks up later writes from the ledger's change feed).

use anyhow::{Context as _, Result};
use netban_config::{Config, LedgerLocation};
use netban_core::policy::Policy;
use netban_core::{Prefix, Timestamp};
use netban_ledger::spool::Spool;
use netban_ledger::{AdmitError, EventKind, Ledger, Outcome, Write};
use netban_proto::{BanArgs, HistoryEvent, ItemResult, ListedBan, SourceBan, UnbanArgs};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    )
}

fn open(config: &Config) -> Result<Box<dyn Ledger>> {
    let location = &config.daemon.ledger;
    if let LedgerLocation::Sqlite(path) = location {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    netban_ledger::open(
        &location.spec(),
        config.daemon.ledger_password_file.as_deref(),
    )
    .with_context(|| format!("opening {location}"))
}

fn result(prefix: Prefix) -> ItemResult {
    ItemResult {
        prefix,
        error: None,
        expiry: None,
        escalation_step: 0,
        still_banned: false,
        changed: false,
        spooled: false,
    }
}

/// Records bans directly in the ledger (the daemon is down). With a shared ledger that does
/// not answer either, they go to this host's spool instead (decided by local policy, without
/// escalation), which the daemon forwards when it runs and the ledger answers: never lost.
pub fn ban(config: &Config, args: &BanArgs) -> Result<Vec<ItemResult>> {
    // This machine's addresses, gateways and resolvers (the targets' device addresses are the
    // daemon's to know; it lifts any such ban when it loads the ledger).
    let (policy, _) = config.policy(&netban_config::infrastructure::discover().found)?;
    match open(config).and_then(|mut ledger| record_bans(&mut *ledger, config, &policy, args)) {
        Err(unreachable) if config.daemon.ledger.is_shared() => {
            spool_bans(config, &policy, args).with_context(|| format!("{unreachable:#}"))
        }
        other => other,
    }
}

/// Writes bans into the spool, answering as the ledger would have.
fn spool_bans(config: &Config, policy: &Policy, args: &BanArgs) -> Result<Vec<ItemResult>> {
    let now = now();
    let path = &config.daemon.spool;
    let mut spool =
        Spool::open(path).with_context(|| format!("opening the spool {}", path.display()))?;
    let mut writes = Vec::new();
    let mut results = Vec::new();
    for &prefix in &args.prefixes {
        let request = args.request(prefix, config.daemon.host.as_ref());
        let mut r = result(prefix);
        match netban_ledger::admit_with_prior(policy, request, 0, now) {
            Ok(write) => {
                if let Write::Ban { ban, .. } = &write {
                    r.expiry = Some(ban.expiry);
                }
                r.changed = true;
                r.still_banned = true;
                r.spooled = true;
                writes.push(write);
            }
            Err(refusal) => r.error = Some(refusal.to_string()),
        }
        results.push(r);
    }
    spool.push(&writes)?;
    Ok(results)
}

fn record_bans(
    ledger: &mut dyn Ledger,
    config: &Config,
    policy: &Policy,
    args: &BanArgs,
) -> Result<Vec<ItemResult>> {
    let now = now();
    let mut writes = Vec::new();
    let mut results = Vec::new();
    let mut slots = Vec::new();
    for &prefix in &args.prefixes {
        let request = args.request(prefix, config.daemon.host.as_ref());
        match netban_ledger::admit(ledger, policy, request, args.restored, now) {
            Ok(write) => {
                if let Write::Ban {
                    escalation_step, ..
                } = &write
                {
                    let mut r = result(prefix);
                    r.escalation_step = *escalation_step;
                    results.push(r);
                }
                writes.push(write);
                slots.push(Some(writes.len() - 1));
            }
            Err(AdmitError::Ledger(e)) => return Err(e.into()),
            Err(AdmitError::Refused(refusal)) => {
                slots.push(None);
                let mut r = result(prefix);
                r.error = Some(refusal.to_string());
                results.push(r);
            }
        }
    }
    let outcomes = ledger.record(&writes, now)?;
    for (r, slot) in results.iter_mut().zip(slots) {
        if let Some(Outcome::Banned { expiry, .. }) = slot.and_then(|i| outcomes.get(i)) {
            r.expiry = Some(*expiry);
            r.changed = true;
            r.still_banned = true;
        }
    }
    Ok(results)
}

pub fn unban(config: &Config, args: &UnbanArgs) -> Result<Vec<ItemResult>> {
    let mut ledger = open(config)?;
    let now = now();
    let prefixes: Vec<Prefix> = if args.all_of_source {
        let source = args.source.as_ref();
        let mut ps: Vec<Prefix> = ledger
            .active_bans(now)?
            .into_iter()
            .filter(|b| Some(&b.source) == source)
            .map(|b| b.prefix)
            .collect();
        ps.dedup();
        ps
    } else {
        args.prefixes.clone()
    };
    let writes: Vec<Write> = prefixes
        .iter()
        .map(|&prefix| Write::Unban {
            prefix,
            source: args.source.clone(),
            kind: EventKind::Unban,
            origin_host: args
                .origin_host
                .clone()
                .or_else(|| config.daemon.host.clone()),
        })
        .collect();
    let outcomes = ledger.record(&writes, now)?;
    let active = ledger.active_bans(now)?;
    Ok(prefixes
        .iter()
        .zip(outcomes)
        .map(|(&prefix, outcome)| {
            let mut r = result(prefix);
            r.changed = matches!(outcome, Outcome::Unbanned { removed, .. } if removed > 0);
            r.still_banned = active.iter().any(|b| b.prefix == prefix);
            r
        })
        .collect())
}

pub fn list(config: &Config, filter: Option<Prefix>) -> Result<Vec<ListedBan>> {
    let mut ledger = open(config)?;
    let mut by_prefix: BTreeMap<Prefix, Vec<SourceBan>> = BTreeMap::new();
    for ban in ledger.active_bans(now())? {
        if filter.is_none_or(|f| f.overlaps(&ban.prefix)) {
            by_prefix.entry(ban.prefix).or_default().push(SourceBan {
                source: ban.source,
                expiry: ban.expiry,
            });
        }
    }
    Ok(by_prefix
        .into_iter()
        .map(|(prefix, sources)| {
            let expiry = sources
                .iter()
                .map(|s| s.expiry)
                .max()
                .expect("at least one source");
            ListedBan {
                prefix,
                expiry,
                sources,
            }
        })
        .collect())
}

pub fn history(config: &Config, prefix: Prefix, limit: usize) -> Result<Vec<HistoryEvent>> {
    let mut ledger = open(config)?;
    Ok(ledger
        .history(&prefix, limit)?
        .into_iter()
        .map(|e| HistoryEvent {
            at: e.at,
            kind: e.kind,
            prefix: e.prefix,
            source: e.source,
            expiry: e.expiry,
            reason: e.reason,
            origin_host: e.origin_host,
            escalation_step: e.escalation_step,
        })
        .collect())
}
