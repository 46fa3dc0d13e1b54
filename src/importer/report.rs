//! What an import carried over: every setting met, whether it mapped, mapped approximately or
//! did not map, with the file and line it was read from.

use std::fmt::{self, Write as _};

use crate::config::ini::SourceLine;

/// How a Fail2Ban setting fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// logjail does the same.
    Mapped,
    /// logjail does nearly the same; the line says how it differs.
    Approximate,
    /// logjail does not do it (or need it); the line says why and what to do instead.
    NotMapped,
}

impl Outcome {
    fn heading(self) -> &'static str {
        match self {
            Outcome::Mapped => "Mapped",
            Outcome::Approximate => "Mapped approximately",
            Outcome::NotMapped => "Not mapped",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub outcome: Outcome,
    /// Where the setting was written; `None` for what no single line holds.
    pub at: Option<SourceLine>,
    /// `[sshd]`, `[DEFAULT]`, `fail2ban.conf`, `action iptables-multiport`.
    pub scope: String,
    /// The setting, e.g. `bantime = 7200`.
    pub setting: String,
    /// What logjail does with it, or why nothing.
    pub message: String,
}

/// Every line, in the order met.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub entries: Vec<Entry>,
    /// Lines about the import as a whole (files read, jails left out, bans found).
    pub summary: Vec<String>,
}

impl Report {
    pub fn add(
        &mut self,
        outcome: Outcome,
        at: Option<&SourceLine>,
        scope: &str,
        setting: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.entries.push(Entry {
            outcome,
            at: at.cloned(),
            scope: scope.to_string(),
            setting: setting.into(),
            message: message.into(),
        });
    }

    pub fn mapped(
        &mut self,
        at: Option<&SourceLine>,
        scope: &str,
        setting: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.add(Outcome::Mapped, at, scope, setting, message);
    }

    pub fn approximate(
        &mut self,
        at: Option<&SourceLine>,
        scope: &str,
        setting: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.add(Outcome::Approximate, at, scope, setting, message);
    }

    pub fn not_mapped(
        &mut self,
        at: Option<&SourceLine>,
        scope: &str,
        setting: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.add(Outcome::NotMapped, at, scope, setting, message);
    }

    pub fn count(&self, outcome: Outcome) -> usize {
        self.entries.iter().filter(|e| e.outcome == outcome).count()
    }

    /// The entries of one outcome.
    pub fn of(&self, outcome: Outcome) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(move |e| e.outcome == outcome)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for line in &self.summary {
            let _ = writeln!(out, "{line}");
        }
        for outcome in [Outcome::Mapped, Outcome::Approximate, Outcome::NotMapped] {
            let _ = writeln!(out, "\n{} ({}):", outcome.heading(), self.count(outcome));
            for entry in self.of(outcome) {
                let at = entry
                    .at
                    .as_ref()
                    .map_or_else(|| "-".to_string(), ToString::to_string);
                let _ = writeln!(
                    out,
                    "  {at}: {} {}: {}",
                    entry.scope, entry.setting, entry.message
                );
            }
        }
        f.write_str(&out)
    }
}
