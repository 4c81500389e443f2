//! When the daemon does not answer: record bans and unbans ourselves, under the same policy,
//! so fail2ban's ban is durable now and enforced when the daemon starts.
//!
//! With the embedded SQLite ledger they go straight into the ledger (the daemon loads every
//! active ban and picks up later writes from its change feed). With the fleet's PostgreSQL
//! ledger they go into this host's spool, which the daemon forwards when it runs: the client
//! never talks to PostgreSQL, so it needs neither the database's password nor its client
//! library (which would double this binary's size and its start-up time).

use anyhow::{anyhow, Context as _, Result};
use netban_config::{Config, LedgerLocation};
use netban_core::policy::Policy;
use netban_core::{Prefix, Timestamp};
use netban_ledger::spool::Spool;
use netban_ledger::sqlite::SqliteLedger;
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

/// The SQLite ledger. A fleet host's PostgreSQL ledger is the daemon's alone (see the module
/// documentation): reading it here is refused with a clear message.
fn open(config: &Config) -> Result<SqliteLedger> {
    match &config.daemon.ledger {
        LedgerLocation::Sqlite(path) => {
            SqliteLedger::open(path).with_context(|| format!("opening {}", path.display()))
        }
        LedgerLocation::Postgres(_) => Err(anyhow!(
            "the ledger is the fleet's PostgreSQL database, which only the daemon reads; \
             start it with `netban serve`"
        )),
    }
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

/// Records bans in the SQLite ledger, or in the spool on a fleet host (decided by local
/// policy, without the fleet's escalation), which the daemon forwards: never lost.
pub fn ban(config: &Config, args: &BanArgs) -> Result<Vec<ItemResult>> {
    // This machine's addresses, gateways and resolvers (the targets' device addresses are the
    // daemon's to know; it lifts any such ban when it loads the ledger).
    let (policy, _) = config.policy(&netban_config::infrastructure::discover().found)?;
    if config.daemon.ledger.is_shared() {
        spool_bans(config, &policy, args)
    } else {
        record_bans(&mut open(config)?, config, &policy, args)
    }
}

fn open_spool(config: &Config) -> Result<Spool> {
    let path = &config.daemon.spool;
    Spool::open(path).with_context(|| format!("opening the spool {}", path.display()))
}

/// Writes bans into the spool, answering as the ledger would have.
fn spool_bans(config: &Config, policy: &Policy, args: &BanArgs) -> Result<Vec<ItemResult>> {
    let now = now();
    let mut spool = open_spool(config)?;
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
    ledger: &mut SqliteLedger,
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
    if config.daemon.ledger.is_shared() {
        return spool_unbans(config, args);
    }
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
        .map(|&prefix| unban_write(config, args, prefix))
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

/// Spools unbans of the listed prefixes (which the daemon forwards). Unbanning every prefix of
/// a source needs the ledger, so it waits for the daemon.
fn spool_unbans(config: &Config, args: &UnbanArgs) -> Result<Vec<ItemResult>> {
    if args.all_of_source {
        return Err(anyhow!(
            "unbanning every address of a source needs the fleet's ledger, which only the \
             daemon reads; start it with `netban serve`"
        ));
    }
    let writes: Vec<Write> = args
        .prefixes
        .iter()
        .map(|&prefix| unban_write(config, args, prefix))
        .collect();
    open_spool(config)?.push(&writes)?;
    Ok(args
        .prefixes
        .iter()
        .map(|&prefix| ItemResult {
            spooled: true,
            ..result(prefix)
        })
        .collect())
}

fn unban_write(config: &Config, args: &UnbanArgs, prefix: Prefix) -> Write {
    Write::Unban {
        prefix,
        source: args.source.clone(),
        kind: EventKind::Unban,
        origin_host: args
            .origin_host
            .clone()
            .or_else(|| config.daemon.host.clone()),
    }
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
        .map(HistoryEvent::from)
        .collect())
}
