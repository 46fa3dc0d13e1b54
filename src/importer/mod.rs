//! `logjail import-fail2ban`: translates a Fail2Ban configuration folder (`jail.conf`,
//! `jail.local`, `jail.d/`, their includes, `fail2ban.conf`, and the filter and action files
//! its jails use) into logjail YAML, with a report of what mapped, what mapped approximately
//! and what did not, each with its file and line.
//!
//! Pure translation: it reads the folder and writes text; nothing is started, banned or run
//! (custom Fail2Ban commands are only named in the report). Addresses a Fail2Ban action keeps
//! in a file (`ip.blacklist`) come out as a list of bans for `logjail import-bans` to apply
//! once through the running daemon (see [`bans`]).

mod actions;
pub mod bans;
mod definition;
pub mod filters;
mod plan;
pub mod report;
mod translate;
pub mod values;
mod yaml;

use std::net::IpAddr;
use std::path::PathBuf;

use crate::config::Config;
use crate::config::ini::{IniError, SourceLine};

pub use self::report::{Entry, Outcome, Report};

/// Where the Fail2Ban configuration is unless told otherwise.
pub const DEFAULT_DIR: &str = "/etc/fail2ban";

/// What to import and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The Fail2Ban folder (`/etc/fail2ban`).
    pub dir: PathBuf,
    /// Keep every jail on its Fail2Ban filter file, even where logjail has a built-in filter
    /// standing for Debian's unchanged one.
    pub fail2ban_filters: bool,
}

/// A ban to make once: an address a Fail2Ban action kept in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedBan {
    /// The logjail jail.
    pub jail: String,
    pub ip: IpAddr,
    /// The file and line it was read from.
    pub at: SourceLine,
}

/// The result of an import.
#[derive(Debug)]
pub struct Import {
    /// The logjail configuration.
    pub yaml: String,
    pub report: Report,
    pub bans: Vec<ImportedBan>,
    /// What `logjail check` says about `yaml`: empty when it passes.
    pub check_errors: Vec<String>,
}

/// Why nothing could be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: no Fail2Ban configuration here (no jail.conf or jail.local)", dir.display())]
    NotAConfiguration { dir: PathBuf },
    /// A file Fail2Ban itself would refuse.
    #[error(transparent)]
    Ini(#[from] IniError),
}

/// Imports the Fail2Ban configuration in `options.dir`.
pub fn import(options: &ImportOptions) -> Result<Import, ImportError> {
    let mut translator = translate::Translator::new(options)?;
    let plan = translator.translate()?;
    let yaml = yaml::write(&plan);
    let mut report = translator.report;
    let check_errors = match Config::from_yaml_str(&yaml, "the imported configuration") {
        Ok(_) => {
            report
                .summary
                .push("The generated configuration passes `logjail check`.".to_string());
            Vec::new()
        }
        Err(errors) => {
            let lines: Vec<String> = errors.errors().iter().map(ToString::to_string).collect();
            report.summary.push(format!(
                "The generated configuration does NOT pass `logjail check` yet ({} error{}, listed at the end).",
                lines.len(),
                if lines.len() == 1 { "" } else { "s" }
            ));
            lines
        }
    };
    Ok(Import {
        yaml,
        report,
        bans: translator.bans,
        check_errors,
    })
}
