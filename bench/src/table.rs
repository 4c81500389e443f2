//! The one output table of a benchmark run: a row per measurement, netban's figure beside the
//! reference's and their ratio, printed as each is measured, under one header.

use std::time::Duration;

/// One measured line.
#[derive(Debug, Default)]
pub struct Row {
    pub what: String,
    /// netban's figure, formatted with its unit.
    pub netban: String,
    /// The reference's figure, formatted with its unit.
    pub reference: String,
    /// How many times netban is faster (reference / netban).
    pub ratio: Option<f64>,
    pub note: String,
}

impl Row {
    /// A row of netban's figure alone.
    pub fn netban(what: impl Into<String>, netban: impl Into<String>) -> Row {
        Row {
            what: what.into(),
            netban: netban.into(),
            ..Row::default()
        }
    }

    /// A row of netban's time beside the reference's, with their ratio.
    pub fn versus(what: impl Into<String>, netban: Duration, reference: Duration) -> Row {
        Row {
            what: what.into(),
            netban: duration(netban),
            reference: duration(reference),
            ratio: Some(ratio(reference, netban)),
            ..Row::default()
        }
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }
}

const HEADER: [&str; 5] = ["measurement", "netban", "reference", "ratio", "note"];

/// Prints rows under one header, section by section.
pub struct Table;

impl Table {
    pub fn start(title: &str) -> Table {
        println!("{title}");
        println!(
            "\n{:<62} {:>14} {:>14} {:>9}  {}",
            HEADER[0], HEADER[1], HEADER[2], HEADER[3], HEADER[4]
        );
        Table
    }

    /// A section's heading: what is measured, against which peer and reference.
    pub fn section(&mut self, heading: &str) {
        println!("\n== {heading}");
    }

    pub fn row(&mut self, row: Row) {
        let ratio = row.ratio.map(|r| format!("{r:.1}x")).unwrap_or_default();
        println!(
            "  {:<60} {:>14} {:>14} {:>9}  {}",
            row.what, row.netban, row.reference, ratio, row.note
        );
    }

    /// A line of explanation under the current section.
    #[cfg_attr(not(feature = "drivers"), allow(dead_code))]
    pub fn text(&mut self, text: &str) {
        for line in text.lines() {
            println!("  | {line}");
        }
    }
}

/// A duration in the unit that reads best: milliseconds below 10 s, seconds above.
pub fn duration(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        ms(d)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Seconds with two decimals.
#[cfg_attr(not(feature = "drivers"), allow(dead_code))]
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// How many times `ours` is faster than `reference`.
pub fn ratio(reference: Duration, ours: Duration) -> f64 {
    reference.as_secs_f64() / ours.as_secs_f64().max(1e-9)
}

pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

pub fn p95(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 95 / 100).min(samples.len() - 1)]
}

/// "met" or "NOT met", for a goal row.
pub fn verdict(ok: bool) -> String {
    if ok {
        "met".into()
    } else {
        "NOT met".into()
    }
}
