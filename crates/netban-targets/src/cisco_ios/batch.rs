//! One apply as one configuration session: from a [`Plan`] and what the router holds right
//! now (read just before) to the exact lines to send, and from the router's answers and the
//! read-back to a per-item [`ApplyReport`]. Pure: no I/O.
//!
//! - Adds get explicit sequence numbers above the highest entry below the tail (IOS renumbers
//!   10, 20, … at reload, so numbers are never remembered, always re-read). A prefix the router
//!   already holds is reported done without a line.
//! - IPv4 removals go by `no SEQ` with the sequence just re-read (the plan's handle is only a
//!   hint: it may predate a reload); IPv6 removals by text (`no deny ipv6 … any`); object-group
//!   members by `no host A` / `no NET MASK`.
//! - Every item is confirmed against the read-back, not against the absence of an error.

use super::ace;
use super::config::{CiscoIosConfig, Mode, TAIL_SEQUENCE};
use super::listing::Listing;
use super::transcript::{LineError, Segment};
use crate::{ApplyReport, ItemOutcome, ItemReport, Step};
use netban_core::plan::{Desired, Held, Plan};
use netban_core::{Family, Prefix};
use std::collections::BTreeMap;

/// What netban's lists hold: the IPv4 ACL (or the object group) and the IPv6 ACL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lists {
    pub primary: Listing,
    pub v6: Option<Listing>,
}

impl Lists {
    fn for_family(&self, family: Family) -> Option<&Listing> {
        match family {
            Family::V4 => Some(&self.primary),
            Family::V6 => self.v6.as_ref(),
        }
    }

    fn count(&self, prefix: &Prefix) -> usize {
        self.for_family(prefix.family())
            .map_or(0, |l| l.bans().filter(|(p, _)| p == prefix).count())
    }

    fn seq_of(&self, prefix: &Prefix) -> Option<Option<u32>> {
        self.for_family(prefix.family())?
            .bans()
            .find(|(p, _)| p == prefix)
            .map(|(_, s)| s)
    }
}

fn held(prefix: Prefix, seq: Option<u32>) -> Held {
    Held {
        prefix,
        expiry: None,
        handle: seq.map(|s| s.to_string()),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ItemState {
    /// Settled before anything is sent.
    Settled(ItemOutcome),
    /// Sent as the line at this index of [`Batch::lines`]; confirmed by the read-back.
    Sent(usize),
}

#[derive(Clone, Debug)]
struct Item {
    prefix: Prefix,
    step: Step,
    state: ItemState,
}

/// The configuration session for one plan.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Every line, `configure terminal` to `end`; empty when there is nothing to send.
    pub lines: Vec<String>,
    items: Vec<Item>,
    /// Lines removed per prefix (to confirm removals by count).
    removing: BTreeMap<Prefix, usize>,
    before: Lists,
}

/// Lines of one list's section, with the plan item each belongs to.
#[derive(Default)]
struct Section {
    lines: Vec<(String, usize)>,
}

impl Batch {
    /// Plans the session: removals first (they free sequence numbers and never depend on
    /// adds), then adds, then refreshes, then the lines in the order the router takes them.
    pub fn new(plan: &Plan, lists: &Lists, config: &CiscoIosConfig) -> Batch {
        let mut draft = Draft {
            config,
            lists,
            items: Vec::with_capacity(plan.len()),
            primary: Section::default(),
            v6: Section::default(),
            removing: BTreeMap::new(),
        };
        draft.removals(&plan.remove);
        draft.adds(&plan.add);
        draft.refreshes(&plan.refresh);
        draft.into_batch()
    }

    /// The first refusal of a line that is not one of the plan's items (`configure terminal`,
    /// the ACL header, `exit`, `end`): the whole session went wrong.
    pub fn structural_error(&self, segments: &[Segment]) -> Option<(String, LineError)> {
        let item_lines: Vec<usize> = self
            .items
            .iter()
            .filter_map(|i| match i.state {
                ItemState::Sent(l) => Some(l),
                _ => None,
            })
            .collect();
        segments
            .iter()
            .enumerate()
            .filter(|(i, _)| !item_lines.contains(i))
            .find_map(|(i, s)| s.error().map(|e| (self.lines[i].clone(), e)))
    }

    /// The report, from the router's answer to each line and the lists read back afterwards.
    pub fn report(&self, segments: &[Segment], after: &Lists) -> ApplyReport {
        let items = self
            .items
            .iter()
            .map(|item| {
                let result = match &item.state {
                    ItemState::Settled(r) => r.clone(),
                    ItemState::Sent(line) => {
                        let error = segments.get(*line).and_then(Segment::error);
                        self.confirm(item, error, after)
                    }
                };
                ItemReport {
                    prefix: item.prefix,
                    step: item.step,
                    result,
                }
            })
            .collect();
        ApplyReport { items }
    }

    fn confirm(&self, item: &Item, error: Option<LineError>, after: &Lists) -> ItemOutcome {
        let p = &item.prefix;
        let confirmed = match item.step {
            Step::Add => after.seq_of(p).map(|seq| held(*p, seq)),
            _ => {
                let expected = self.before.count(p).saturating_sub(self.removing[p]);
                (after.count(p) <= expected).then(|| held(*p, None))
            }
        };
        match (confirmed, error) {
            (Some(h), _) => ItemOutcome::Done {
                held: (item.step == Step::Add).then_some(h),
            },
            (None, Some(e)) if e.is_syntax() => ItemOutcome::Rejected {
                reason: format!("the router refused the line: {}", e.message()),
            },
            (None, Some(e)) => ItemOutcome::Failed {
                reason: format!("the router answered: {}", e.message()),
            },
            (None, None) => ItemOutcome::Failed {
                reason: match item.step {
                    Step::Add => "not in the list when read back after the session".into(),
                    _ => "still in the list when read back after the session".into(),
                },
            },
        }
    }
}

/// The lines that make netban's trailing permit right in one list, given its current tails:
/// exactly one `permit … any any`, at [`TAIL_SEQUENCE`]. Empty when it already is.
pub fn tail_fix(family: Family, tails: &[Option<u32>]) -> Vec<String> {
    if tails == [Some(TAIL_SEQUENCE)] {
        return Vec::new();
    }
    let mut lines = Vec::new();
    match family {
        Family::V4 => {
            for seq in tails.iter().flatten().filter(|s| **s != TAIL_SEQUENCE) {
                lines.push(format!("no {seq}"));
            }
            if !tails.contains(&Some(TAIL_SEQUENCE)) {
                lines.push(ace::tail_v4(TAIL_SEQUENCE));
            }
        }
        Family::V6 => {
            // IPv6 entries are removed by text: drop every copy, then add the one at the tail.
            for _ in tails {
                lines.push("no permit ipv6 any any".to_string());
            }
            lines.push(ace::tail_v6(TAIL_SEQUENCE));
        }
    }
    lines
}

/// A batch being planned: the items so far and the lines of each list's section.
struct Draft<'a> {
    config: &'a CiscoIosConfig,
    lists: &'a Lists,
    items: Vec<Item>,
    primary: Section,
    v6: Section,
    removing: BTreeMap<Prefix, usize>,
}

impl Draft<'_> {
    /// An item decided without sending anything.
    fn settle(&mut self, prefix: Prefix, step: Step, outcome: ItemOutcome) {
        self.items.push(Item {
            prefix,
            step,
            state: ItemState::Settled(outcome),
        });
    }

    /// An item carried out by `line` in its family's section.
    fn send(&mut self, prefix: Prefix, step: Step, line: String) {
        let section = match prefix.family() {
            Family::V4 => &mut self.primary,
            Family::V6 => &mut self.v6,
        };
        section.lines.push((line, self.items.len()));
        self.items.push(Item {
            prefix,
            step,
            // The line's index is known once the sections are placed (`into_batch`).
            state: ItemState::Sent(0),
        });
    }

    /// One line per removal, against the sequence numbers just read (the plan's handle is only
    /// a hint); a prefix no longer on the router is done.
    fn removals(&mut self, remove: &[Held]) {
        let mut by_prefix: BTreeMap<Prefix, Vec<&Held>> = BTreeMap::new();
        for h in remove {
            by_prefix.entry(h.prefix).or_default().push(h);
        }
        for (prefix, removes) in by_prefix {
            let mut available: Vec<Option<u32>> = self
                .lists
                .for_family(prefix.family())
                .map(|l| {
                    l.bans()
                        .filter(|(p, _)| *p == prefix)
                        .map(|(_, s)| s)
                        .collect()
                })
                .unwrap_or_default();
            for h in removes {
                let hinted = h
                    .handle
                    .as_deref()
                    .and_then(|s| s.parse::<u32>().ok())
                    .and_then(|s| available.iter().position(|c| *c == Some(s)));
                let Some(i) = hinted.or_else(|| available.len().checked_sub(1)) else {
                    // Already gone from the router.
                    self.settle(prefix, Step::Remove, ItemOutcome::Done { held: None });
                    continue;
                };
                let seq = available.remove(i);
                let line = match (self.config.mode, prefix.family(), seq) {
                    (Mode::ObjectGroup, _, _) => format!("no {}", ace::member(&prefix)),
                    (Mode::Acl, Family::V4, Some(seq)) => format!("no {seq}"),
                    (Mode::Acl, _, _) => ace::no_ace_v6(self.config.action, &prefix),
                };
                *self.removing.entry(prefix).or_default() += 1;
                self.send(prefix, Step::Remove, line);
            }
        }
    }

    /// One line per add, numbered above the highest entry below the tail; a prefix the router
    /// already holds is done without a line.
    fn adds(&mut self, add: &[Desired]) {
        let mut next = Sequences {
            v4: self.lists.primary.max_seq_below(TAIL_SEQUENCE),
            v6: self
                .lists
                .v6
                .as_ref()
                .map_or(0, |l| l.max_seq_below(TAIL_SEQUENCE)),
        };
        for d in add {
            let prefix = d.prefix;
            if self.lists.for_family(prefix.family()).is_none() {
                let reason = match self.config.mode {
                    Mode::ObjectGroup => "object-group mode holds IPv4 only".into(),
                    Mode::Acl => "no IPv6 ACL configured (acl6 is empty)".into(),
                };
                self.settle(prefix, Step::Add, ItemOutcome::Rejected { reason });
                continue;
            }
            if let Some(seq) = self.lists.seq_of(&prefix) {
                let held = Some(held(prefix, seq));
                self.settle(prefix, Step::Add, ItemOutcome::Done { held });
                continue;
            }
            match self.add_line(&prefix, &mut next) {
                Some(line) => self.send(prefix, Step::Add, line),
                None => self.settle(
                    prefix,
                    Step::Add,
                    ItemOutcome::Failed {
                        reason: "no free sequence number left below the tail: resequence the \
                                 ACL (`ip access-list resequence NAME 10 10`)"
                            .into(),
                    },
                ),
            }
        }
    }

    /// The line that adds `prefix`, taking the next sequence number in ACL mode; `None` when
    /// no number is left below the tail.
    fn add_line(&self, prefix: &Prefix, next: &mut Sequences) -> Option<String> {
        let action = self.config.action;
        if self.config.mode == Mode::ObjectGroup {
            return Some(ace::member(prefix));
        }
        let family = prefix.family();
        let next = match family {
            Family::V4 => &mut next.v4,
            Family::V6 => &mut next.v6,
        };
        let seq = next.checked_add(10).filter(|s| *s < TAIL_SEQUENCE)?;
        *next = seq;
        Some(match family {
            Family::V4 => ace::ace_v4(seq, action, prefix),
            Family::V6 => ace::ace_v6(seq, action, prefix),
        })
    }

    /// The router keeps no expiry (ExpiryTracking::None): nothing to send; reported done as
    /// held now.
    fn refreshes(&mut self, refresh: &[(Held, Desired)]) {
        for (h, _) in refresh {
            let seq = self.lists.seq_of(&h.prefix).flatten();
            let held = Some(held(h.prefix, seq));
            self.settle(h.prefix, Step::Refresh, ItemOutcome::Done { held });
        }
    }

    /// The session's lines: `configure terminal`, each non-empty section under its header and
    /// closed by `exit`, then `end`; each sent item learns the index of its line.
    fn into_batch(mut self) -> Batch {
        let config = self.config;
        let header = match config.mode {
            Mode::Acl => format!("ip access-list extended {}", config.acl),
            Mode::ObjectGroup => format!("object-group network {}", config.object_group),
        };
        let sections = [
            (header, std::mem::take(&mut self.primary)),
            (
                format!("ipv6 access-list {}", config.acl6),
                std::mem::take(&mut self.v6),
            ),
        ];
        let mut lines = Vec::new();
        for (header, section) in sections {
            if section.lines.is_empty() {
                continue;
            }
            if lines.is_empty() {
                lines.push("configure terminal".to_string());
            }
            lines.push(header);
            for (line, item) in section.lines {
                self.items[item].state = ItemState::Sent(lines.len());
                lines.push(line);
            }
            lines.push("exit".to_string());
        }
        if !lines.is_empty() {
            lines.push("end".to_string());
        }
        Batch {
            lines,
            items: self.items,
            removing: self.removing,
            before: self.lists.clone(),
        }
    }
}

/// The last sequence number given out per ACL.
struct Sequences {
    v4: u32,
    v6: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cisco_ios::ace::{Entry, EntryKind};
    use crate::cisco_ios::transcript::Prompt;
    use netban_core::plan::Desired;
    use netban_core::Expiry;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }
    fn config() -> CiscoIosConfig {
        CiscoIosConfig {
            password: Some("x".into()),
            host_key_fingerprint: Some("SHA256:x".into()),
            ..CiscoIosConfig::new("r1", 22, "u")
        }
    }
    fn listing(entries: &[(u32, &str)]) -> Listing {
        Listing {
            entries: entries
                .iter()
                .map(|(seq, s)| Entry {
                    seq: Some(*seq),
                    kind: if *s == "tail" {
                        EntryKind::Tail
                    } else {
                        EntryKind::Ban(p(s))
                    },
                })
                .collect(),
        }
    }
    fn add(s: &str) -> Desired {
        Desired::new(p(s), Expiry::Never)
    }
    fn rm(s: &str, handle: Option<&str>) -> Held {
        Held {
            prefix: p(s),
            expiry: None,
            handle: handle.map(str::to_string),
        }
    }
    fn ok_segments(n: usize) -> Vec<Segment> {
        (0..n)
            .map(|_| Segment {
                lines: vec![],
                prompt: Prompt {
                    mode: None,
                    privileged: true,
                },
            })
            .collect()
    }

    #[test]
    fn adds_are_numbered_above_the_highest_entry_below_the_tail() {
        let lists = Lists {
            primary: listing(&[
                (10, "203.0.113.1"),
                (20, "203.0.113.2"),
                (TAIL_SEQUENCE, "tail"),
            ]),
            v6: Some(listing(&[(TAIL_SEQUENCE, "tail")])),
        };
        let plan = Plan {
            add: vec![
                add("203.0.113.3"),
                add("198.51.100.0/24"),
                add("2001:db8::1"),
                add("203.0.113.1"),
            ],
            remove: vec![rm("203.0.113.2", Some("20"))],
            ..Plan::default()
        };
        let b = Batch::new(&plan, &lists, &config());
        assert_eq!(
            b.lines,
            vec![
                "configure terminal",
                "ip access-list extended NETBAN",
                "no 20",
                "30 deny ip host 203.0.113.3 any",
                "40 deny ip 198.51.100.0 0.0.0.255 any",
                "exit",
                "ipv6 access-list NETBAN6",
                "deny ipv6 host 2001:db8::1 any sequence 10",
                "exit",
                "end",
            ]
        );
        // Read back as the router would hold it afterwards.
        let after = Lists {
            primary: listing(&[
                (10, "203.0.113.1"),
                (30, "203.0.113.3"),
                (40, "198.51.100.0/24"),
                (TAIL_SEQUENCE, "tail"),
            ]),
            v6: Some(listing(&[(10, "2001:db8::1"), (TAIL_SEQUENCE, "tail")])),
        };
        let report = b.report(&ok_segments(b.lines.len()), &after);
        let results: Vec<_> = report
            .items
            .iter()
            .map(|i| (i.prefix.to_string(), i.step, i.result.clone()))
            .collect();
        assert_eq!(results.len(), 5);
        assert_eq!(
            results[0],
            (
                "203.0.113.2/32".into(),
                Step::Remove,
                ItemOutcome::Done { held: None }
            )
        );
        assert_eq!(
            results[1].2,
            ItemOutcome::Done {
                held: Some(held(p("203.0.113.3"), Some(30)))
            }
        );
        // Already held before: done without a line, with its current sequence.
        assert_eq!(
            results[4].2,
            ItemOutcome::Done {
                held: Some(held(p("203.0.113.1"), Some(10)))
            }
        );
    }

    #[test]
    fn stale_handles_fall_back_to_the_sequence_read_now() {
        // The plan saw 2001:db8::1 at 50 and 203.0.113.9 at 70 before a reload renumbered.
        let lists = Lists {
            primary: listing(&[(10, "203.0.113.9"), (20, "203.0.113.9")]),
            v6: Some(listing(&[(10, "2001:db8::1")])),
        };
        let plan = Plan {
            remove: vec![
                rm("203.0.113.9", Some("70")),
                rm("2001:db8::1", Some("50")),
                rm("203.0.113.99", None),
            ],
            ..Plan::default()
        };
        let b = Batch::new(&plan, &lists, &config());
        assert_eq!(
            b.lines,
            vec![
                "configure terminal",
                "ip access-list extended NETBAN",
                "no 20",
                "exit",
                "ipv6 access-list NETBAN6",
                "no deny ipv6 host 2001:db8::1 any",
                "exit",
                "end",
            ]
        );
    }

    #[test]
    fn refused_lines_are_rejected_and_silent_failures_fail() {
        let lists = Lists {
            primary: listing(&[]),
            v6: Some(listing(&[])),
        };
        let plan = Plan {
            add: vec![add("203.0.113.1"), add("203.0.113.2")],
            ..Plan::default()
        };
        let b = Batch::new(&plan, &lists, &config());
        let mut segs = ok_segments(b.lines.len());
        segs[2].lines = vec![
            "10 deny ip host 203.0.113.1 any".into(),
            "            ^".into(),
            "% Invalid input detected at '^' marker.".into(),
        ];
        assert_eq!(b.structural_error(&segs), None);
        let report = b.report(&segs, &lists);
        assert!(
            matches!(&report.items[0].result, ItemOutcome::Rejected { reason } if reason.contains("Invalid input"))
        );
        assert!(
            matches!(&report.items[1].result, ItemOutcome::Failed { reason } if reason.contains("not in the list"))
        );

        segs[1].lines = vec!["% Invalid input detected at '^' marker.".into()];
        let (line, _) = b.structural_error(&segs).unwrap();
        assert_eq!(line, "ip access-list extended NETBAN");
    }

    #[test]
    fn object_groups_use_members_and_refuse_ipv6() {
        let cfg = CiscoIosConfig {
            mode: Mode::ObjectGroup,
            ..config()
        };
        let lists = Lists {
            primary: Listing {
                entries: vec![Entry {
                    seq: None,
                    kind: EntryKind::Ban(p("203.0.113.5")),
                }],
            },
            v6: None,
        };
        let plan = Plan {
            add: vec![add("198.51.100.0/25"), add("2001:db8::1")],
            remove: vec![rm("203.0.113.5", None)],
            ..Plan::default()
        };
        let b = Batch::new(&plan, &lists, &cfg);
        assert_eq!(
            b.lines,
            vec![
                "configure terminal",
                "object-group network NETBAN",
                "no host 203.0.113.5",
                "198.51.100.0 255.255.255.128",
                "exit",
                "end",
            ]
        );
        let report = b.report(&ok_segments(b.lines.len()), &lists);
        assert!(matches!(
            report.items[2].result,
            ItemOutcome::Rejected { .. }
        ));
    }

    #[test]
    fn nothing_to_send_means_no_session() {
        let lists = Lists {
            primary: listing(&[(10, "203.0.113.1")]),
            v6: Some(listing(&[])),
        };
        let plan = Plan {
            add: vec![add("203.0.113.1")],
            remove: vec![rm("203.0.113.7", None)],
            ..Plan::default()
        };
        let b = Batch::new(&plan, &lists, &config());
        assert!(b.lines.is_empty());
        let report = b.report(&[], &lists);
        assert!(report
            .items
            .iter()
            .all(|i| matches!(i.result, ItemOutcome::Done { .. })));
    }

    #[test]
    fn the_tail_is_moved_back_to_the_top_sequence_after_a_renumbering() {
        assert!(tail_fix(Family::V4, &[Some(TAIL_SEQUENCE)]).is_empty());
        assert_eq!(
            tail_fix(Family::V4, &[]),
            vec!["2147483647 permit ip any any"]
        );
        assert_eq!(
            tail_fix(Family::V4, &[Some(40)]),
            vec!["no 40", "2147483647 permit ip any any"]
        );
        assert_eq!(
            tail_fix(Family::V6, &[Some(30)]),
            vec![
                "no permit ipv6 any any",
                "permit ipv6 any any sequence 2147483647"
            ]
        );
    }
}
