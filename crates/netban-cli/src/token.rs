//! `netban token add/list/revoke`: the HTTP API's token store (see
//! `netban_config::tokens`). The daemon notices the file change; a revoked token stops
//! working with its next request. The token itself is printed once, by `add`, and never
//! stored.

use crate::args::{RoleArg, TokenCommand};
use crate::output;
use anyhow::Result;
use netban_config::tokens::{parse_expiry, StoredToken, TokenRole, TokenStore};
use netban_core::Source;
use std::path::Path;

pub fn run(store_path: &Path, command: TokenCommand) -> Result<()> {
    let mut store = TokenStore::load(store_path)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    match command {
        TokenCommand::Add {
            name,
            role,
            sources,
            prefix_lengths_v4,
            prefix_lengths_v6,
            expires,
        } => {
            let expires = expires.map(|e| parse_expiry(&e, now)).transpose()?;
            let some = |v: Vec<u8>| (!v.is_empty()).then_some(v);
            let entry = StoredToken {
                name,
                role: match role {
                    RoleArg::Read => TokenRole::Read,
                    RoleArg::Ban => TokenRole::Ban,
                    RoleArg::Admin => TokenRole::Admin,
                    RoleArg::Bouncer => TokenRole::Bouncer,
                },
                sha256: String::new(),
                sources: (!sources.is_empty()).then_some(sources),
                prefix_lengths_v4: some(prefix_lengths_v4),
                prefix_lengths_v6: some(prefix_lengths_v6),
                created: now,
                expires,
            };
            let token = store.add(entry)?;
            store.save(store_path)?;
            println!("{token}");
            eprintln!(
                "netban: token saved in {} (only its digest); it is shown this once",
                store_path.display()
            );
        }
        TokenCommand::List { json } => {
            if json {
                let listed: Vec<_> = store
                    .tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "name": t.name, "role": t.role, "sources": t.sources,
                            "prefix_lengths_v4": t.prefix_lengths_v4,
                            "prefix_lengths_v6": t.prefix_lengths_v6, "created": t.created,
                            "expires": t.expires, "expired": t.expired_at(now),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&listed)?);
            } else {
                for t in &store.tokens {
                    let list = |v: &Option<Vec<u8>>| {
                        v.as_ref().map_or("any".to_string(), |v| {
                            v.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
                        })
                    };
                    let sources = t.sources.as_ref().map_or("any".to_string(), |s| {
                        s.iter().map(Source::as_str).collect::<Vec<_>>().join(",")
                    });
                    let expires = match t.expires {
                        None => "expires=never".to_string(),
                        Some(at) => format!(
                            "{}={}",
                            if t.expired_at(now) {
                                "EXPIRED"
                            } else {
                                "expires"
                            },
                            output::time(netban_core::Timestamp(at)).replace(' ', "T")
                        ),
                    };
                    println!(
                        "{:<20} {:<6} sources={} v4={} v6={} {}",
                        t.name,
                        t.role.as_str(),
                        sources,
                        list(&t.prefix_lengths_v4),
                        list(&t.prefix_lengths_v6),
                        expires
                    );
                }
            }
        }
        TokenCommand::Revoke { name } => {
            store.revoke(&name)?;
            store.save(store_path)?;
            eprintln!("netban: token {name:?} revoked");
        }
    }
    Ok(())
}
