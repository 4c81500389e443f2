//! What the client prints: aligned text for people, `--json` for scripts.

use anyhow::Result;
use netban_core::{Expiry, Timestamp};
use netban_proto::{HistoryEvent, ItemResult, ListedBan, StatusReport, TargetPlan, TargetScope};
use serde::Serialize;

fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `2026-11-21 05:14:03Z` (see [`Timestamp::utc`]).
pub fn time(t: Timestamp) -> String {
    t.utc()
}

fn expiry(e: Expiry) -> String {
    match e {
        Expiry::Never => "never".into(),
        Expiry::At(t) => time(t),
    }
}

/// Prints per-item results of a ban or unban; refused items go to stderr and make the exit
/// status 1. With `as_json`, standard output is the results as one JSON array (what the
/// fail2ban Python action reads when it falls back to the client).
pub fn item_results(verb: &str, results: &[ItemResult], as_json: bool) -> Result<()> {
    if as_json {
        println!("{}", serde_json::to_string(results)?);
        for r in results {
            if let Some(e) = &r.error {
                eprintln!("netban: refused {}: {e}", r.prefix);
            }
        }
        return if results.iter().any(|r| r.error.is_some()) {
            Err(crate::Refused.into())
        } else {
            Ok(())
        };
    }
    let mut refused = false;
    for r in results {
        match &r.error {
            Some(e) => {
                eprintln!("netban: refused {}: {e}", r.prefix);
                refused = true;
            }
            None if verb == "banned" => {
                let until = r.expiry.map(expiry).unwrap_or_default();
                let escalated = if r.escalation_step > 0 {
                    format!(
                        " (repeat offender: {} earlier ban(s), escalated)",
                        r.escalation_step
                    )
                } else {
                    String::new()
                };
                println!("banned {} until {until}{escalated}", r.prefix);
            }
            None if !r.changed => println!("{} was not banned by that source", r.prefix),
            None if r.still_banned => {
                println!("unbanned {} (still banned by other sources)", r.prefix)
            }
            None => println!("{verb} {}", r.prefix),
        }
    }
    if refused {
        return Err(crate::Refused.into());
    }
    Ok(())
}

pub fn list(bans: &[ListedBan], as_json: bool) -> Result<()> {
    if as_json {
        return json(bans);
    }
    if bans.is_empty() {
        println!("no active bans");
        return Ok(());
    }
    println!("{:<44} {:<21} SOURCES", "PREFIX", "EXPIRES");
    for ban in bans {
        let sources: Vec<String> = ban
            .sources
            .iter()
            .map(|s| format!("{} (until {})", s.source, expiry(s.expiry)))
            .collect();
        println!(
            "{:<44} {:<21} {}",
            ban.prefix.to_string(),
            expiry(ban.expiry),
            sources.join(", ")
        );
    }
    Ok(())
}

pub fn status(report: &StatusReport, as_json: bool) -> Result<()> {
    if as_json {
        return json(report);
    }
    println!(
        "netban {} — {} active bans — ledger {}",
        report.version, report.active_bans, report.ledger
    );
    println!("running since {}", time(report.started_at));
    let health = &report.ledger_health;
    if let Some(since) = health.unreachable_since {
        println!(
            "LEDGER FAILING since {}: {}",
            time(since),
            health.last_error.as_deref().unwrap_or("no answer")
        );
    }
    if let Some(problems) = &health.damaged {
        println!("LEDGER DAMAGED (integrity check at start): {problems}");
    }
    if health.spooled > 0 {
        println!("{} writes wait in the local spool", health.spooled);
    }
    if health.quarantined > 0 {
        println!(
            "{} unreadable ledger rows quarantined; last: {}",
            health.quarantined,
            health.last_quarantined.as_deref().unwrap_or("?")
        );
    }
    for s in &report.sources {
        let last = s.last_poll.map(time).unwrap_or_else(|| "never".into());
        match s.down_since {
            Some(since) => println!(
                "source {} ({}, {}): DOWN since {} (nothing lifted meanwhile; retry in {} s): {}",
                s.name,
                s.kind,
                s.url,
                time(since),
                s.retry_in_secs.unwrap_or(0),
                s.last_error.as_deref().unwrap_or("no answer")
            ),
            None => println!(
                "source {} ({}, {}): up — {} decisions, {} bans and {} unbans recorded, {} refused, last poll {}",
                s.name, s.kind, s.url, s.decisions, s.bans, s.unbans, s.refused, last
            ),
        }
        if let Some(refusal) = &s.last_refusal {
            println!("    last refusal: {refusal}");
        }
    }
    if report.targets.is_empty() {
        println!("no targets configured");
    }
    for t in &report.targets {
        let last = t.last_sync.map(time).unwrap_or_else(|| "never".into());
        let merged = if t.aggregates > 0 {
            format!(" ({} covering prefixes)", t.aggregates)
        } else {
            String::new()
        };
        println!(
            "target {} ({}): {} — holds {}{merged}, should hold {}, pending {}, overflow {}, last sync {}",
            t.name, t.kind, t.health, t.held, t.desired, t.pending, t.overflow, last
        );
        if t.scope == TargetScope::Fleet {
            match (&t.driver, t.driving_since) {
                (Some(host), Some(since)) => {
                    println!(
                        "    shared by the fleet: driven by {host} since {}",
                        time(since)
                    )
                }
                (Some(host), None) => println!("    shared by the fleet: driven by {host}"),
                _ => println!("    shared by the fleet: no driver known (database unreachable?)"),
            }
        }
        if let Some(e) = &t.last_error {
            println!("    last error: {e}");
        }
        for c in &t.consumers {
            let agent = c
                .user_agent
                .as_deref()
                .map(|ua| format!(", {ua}"))
                .unwrap_or_default();
            let holds = match (&c.etag, c.since) {
                (Some(_), Some(since)) => format!(
                    "holds {} entries ({}) since {}",
                    c.entries,
                    if c.current { "current" } else { "OUTDATED" },
                    time(since)
                ),
                _ => "holds nothing from netban yet".to_string(),
            };
            println!(
                "    consumer {} ({}{agent}): last pull {}, {holds}",
                c.address,
                c.identity,
                time(c.last_seen)
            );
        }
    }
    Ok(())
}

pub fn plan(plans: &[TargetPlan], as_json: bool) -> Result<()> {
    if as_json {
        return json(plans);
    }
    for p in plans {
        if let Some(e) = &p.error {
            println!("target {}: cannot plan: {e}", p.target);
            continue;
        }
        if p.add.is_empty() && p.remove.is_empty() && p.refresh.is_empty() {
            println!("target {}: in sync", p.target);
            continue;
        }
        println!(
            "target {}: +{} -{} ~{}",
            p.target,
            p.add.len(),
            p.remove.len(),
            p.refresh.len()
        );
        for a in &p.add {
            println!("  + {a}");
        }
        for r in &p.remove {
            println!("  - {r}");
        }
        for r in &p.refresh {
            println!("  ~ {r} (expiry)");
        }
    }
    Ok(())
}

pub fn history(events: &[HistoryEvent], as_json: bool) -> Result<()> {
    if as_json {
        return json(events);
    }
    if events.is_empty() {
        println!("no history");
    }
    for e in events {
        let source = e
            .source
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "all sources".into());
        let until = e
            .expiry
            .map(|x| format!(" until {}", expiry(x)))
            .unwrap_or_default();
        let step = if e.escalation_step > 0 {
            format!(" (escalated after {} earlier ban(s))", e.escalation_step)
        } else {
            String::new()
        };
        let host = e
            .origin_host
            .as_ref()
            .map(|h| format!(" from {h}"))
            .unwrap_or_default();
        println!(
            "{} {:<7} {} by {source}{until}{step}{host}",
            time(e.at),
            e.kind,
            e.prefix
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(time(Timestamp(0)), "1970-01-01 00:00:00Z");
        assert_eq!(time(Timestamp(1_763_702_051)), "2025-11-21 05:14:11Z");
        assert_eq!(time(Timestamp(951_782_400)), "2000-02-29 00:00:00Z");
    }
}
