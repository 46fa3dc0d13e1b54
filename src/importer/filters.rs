//! Which filter an imported jail runs: logjail's built-in of the same name when the Fail2Ban
//! filter is Debian's unchanged stock file (same failures, much faster, see
//! `tests/fixtures/filters/DIFFERENCES.md`), else the Fail2Ban file itself
//! (`filter: {fail2ban: PATH, mode: …}`). Also the filter's `journalmatch`, for jails on the
//! journal.

use std::path::{Path, PathBuf};

use crate::config::ini::{IniError, SourceLine};
use crate::filter::builtin;

use super::definition::Definition;
use super::report::Report;
use super::values::Entry;

/// Debian's fail2ban 1.0.2 filter files that a built-in filter stands for, and the files they
/// include, by file name and [`content_hash`]. Any other content (a line edited, a failregex
/// added, a `.local` next to it) keeps the Fail2Ban file.
const STOCK_FILES: &[(&str, u64)] = &[
    ("sshd.conf", 0xaf3c_a5be_9e7c_6c8b),
    ("asterisk.conf", 0xa6c7_d839_0794_ce8f),
    ("dovecot.conf", 0x285f_69e7_460a_4d55),
    ("nginx-botsearch.conf", 0x886a_cb9c_becb_3c01),
    ("nginx-http-auth.conf", 0xde13_79ed_dabe_d481),
    ("postfix.conf", 0xe886_ff34_dd58_c8be),
    ("proftpd.conf", 0x3edf_cd8b_ebce_4205),
    ("recidive.conf", 0x2b9c_a68e_bfd9_7912),
    ("apache-auth.conf", 0xcf36_0157_9502_1920),
    ("traefik-auth.conf", 0x69d1_8808_58c8_5e75),
    ("vsftpd.conf", 0x3517_44f3_6e01_8cfb),
    ("common.conf", 0x9360_fa54_665b_4cf6),
    ("apache-common.conf", 0x72df_2fc3_10dc_356c),
    ("botsearch-common.conf", 0x3c8b_8680_d22b_7c8e),
];

/// The Fail2Ban modes a built-in filter matches like; filters not listed have no modes.
const BUILTIN_MODES: &[(&str, &[&str])] = &[
    ("sshd", &["normal"]),
    ("dovecot", &["normal"]),
    ("nginx-http-auth", &["normal"]),
    ("apache-auth", &["normal"]),
    // The built-in is the default `more` mode plus `auth`.
    ("postfix", &["more"]),
];

/// What a jail's `filter =` becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterPlan {
    /// `filter: NAME`.
    Builtin(String),
    /// `filter: {fail2ban: PATH, KEY: VALUE…}`.
    Fail2Ban {
        path: PathBuf,
        options: Vec<(String, String)>,
    },
}

/// A filter worked out, with its journal selection.
#[derive(Debug)]
pub(super) struct FilterChoice {
    pub plan: FilterPlan,
    /// The filter's `journalmatch`, tags filled in (empty when it has none).
    pub journalmatch: Option<(String, SourceLine)>,
}

/// Chooses the filter for `entry` (the jail's `filter = NAME[options]`, written at `at`).
/// `overrides` are filter settings the jail itself sets (`failregex`, `datepattern`, …): they
/// go to the Fail2Ban file as options, as Fail2Ban applies them. `None` (reported) when the
/// filter file does not exist.
#[allow(clippy::too_many_arguments)]
pub(super) fn choose(
    dir: &Path,
    jail: &str,
    entry: &Entry,
    at: &SourceLine,
    overrides: &[(String, String, SourceLine)],
    prefer_files: bool,
    report: &mut Report,
) -> Result<Option<FilterChoice>, IniError> {
    let scope = format!("[{jail}]");
    let shown = show_entry(entry);
    let Some(filter) = Definition::read(dir, "filter.d", &entry.name, &entry.options, at)? else {
        report.not_mapped(
            Some(at),
            &scope,
            format!("filter = {shown}"),
            format!(
                "no filter.d/{}.conf or .local under {} (Fail2Ban refuses such a jail); the jail \
                 is not imported",
                entry.name,
                dir.display()
            ),
        );
        return Ok(None);
    };
    let journalmatch = filter
        .resolved("journalmatch")?
        .filter(|value| !value.text.trim().is_empty())
        .map(|value| (value.text.trim().to_string(), value.at));
    let stock = stock_reason(&filter);
    let builtin_ok = builtin::spec(&entry.name).is_some()
        && overrides.is_empty()
        && modes_fit(&entry.name, entry)
        && stock.is_ok()
        && !prefer_files;
    if builtin_ok {
        report.approximate(
            Some(at),
            &scope,
            format!("filter = {shown}"),
            format!(
                "filter: {}: logjail's built-in filter in place of Debian's unchanged filter.d/{}.conf \
                 (the same failures on Fail2Ban's sample logs but for the differences in \
                 tests/fixtures/filters/DIFFERENCES.md; `--fail2ban-filters` keeps the file)",
                entry.name, entry.name
            ),
        );
        return Ok(Some(FilterChoice {
            plan: FilterPlan::Builtin(entry.name.clone()),
            journalmatch,
        }));
    }
    let conf = dir.join("filter.d").join(format!("{}.conf", entry.name));
    let path = if conf.is_file() {
        conf
    } else {
        dir.join("filter.d").join(format!("{}.local", entry.name))
    };
    let mut options = entry.options.clone();
    for (key, value, override_at) in overrides {
        options.retain(|(k, _)| k != key);
        options.push((key.clone(), value.clone()));
        report.approximate(
            Some(override_at),
            &scope,
            format!("{key} (set in the jail)"),
            "handed to the Fail2Ban filter file as an option, which replaces the filter's own \
             value as in Fail2Ban",
        );
    }
    let why = match (&stock, builtin::spec(&entry.name).is_some()) {
        _ if prefer_files => "as asked (--fail2ban-filters)".to_string(),
        (_, false) => "logjail has no built-in filter of this name".to_string(),
        (Err(reason), true) => format!("not Debian's stock file ({reason})"),
        (Ok(()), true) if !overrides.is_empty() => {
            "the jail changes the filter's settings".to_string()
        }
        (Ok(()), true) => {
            "its options select a mode the built-in filter does not match".to_string()
        }
    };
    report.mapped(
        Some(at),
        &scope,
        format!("filter = {shown}"),
        format!(
            "filter: {{fail2ban: {}}}, read by logjail at start ({why}); keep that folder where \
             logjail can read it",
            path.display()
        ),
    );
    Ok(Some(FilterChoice {
        plan: FilterPlan::Fail2Ban { path, options },
        journalmatch,
    }))
}

/// The built-in filter that stands for Fail2Ban's `filter.d/NAME` under `dir` with these
/// options (Debian's unchanged file, a mode the built-in matches), if there is one: what
/// `fail2ban-regex` runs for a stock filter name (the built-in stands for Debian's unchanged file).
pub fn builtin_standing_for(
    dir: &Path,
    name: &str,
    options: &[(String, String)],
) -> Option<String> {
    builtin::spec(name)?;
    let entry = Entry {
        name: name.to_string(),
        options: options.to_vec(),
    };
    if !modes_fit(name, &entry) {
        return None;
    }
    let at = SourceLine {
        file: std::sync::Arc::from(dir),
        line: 0,
    };
    let filter = Definition::read(dir, "filter.d", name, options, &at).ok()??;
    stock_reason(&filter).ok().map(|()| name.to_string())
}

/// `sshd[mode=normal]`, as written.
pub fn show_entry(entry: &Entry) -> String {
    if entry.options.is_empty() {
        return entry.name.clone();
    }
    let options: Vec<String> = entry
        .options
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    format!("{}[{}]", entry.name, options.join(", "))
}

/// Whether the options passed select what the built-in filter matches: none but `mode`, and
/// a mode the built-in stands for (any mode for a filter without modes).
fn modes_fit(name: &str, entry: &Entry) -> bool {
    if entry.options.iter().any(|(key, _)| key != "mode") {
        return false;
    }
    let Some(mode) = entry.option("mode") else {
        return true;
    };
    match BUILTIN_MODES.iter().find(|(filter, _)| *filter == name) {
        Some((_, modes)) => modes.contains(&mode),
        None => true,
    }
}

/// `Ok` when every file the filter reads is a stock one; else which is not.
fn stock_reason(filter: &Definition) -> Result<(), String> {
    for path in filter.stack.files() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".local") {
            return Err(format!("{name} changes it"));
        }
        let Some((_, hash)) = STOCK_FILES.iter().find(|(stock, _)| *stock == name) else {
            return Err(format!("{name} is not one of Debian's"));
        };
        let text = std::fs::read_to_string(path.as_ref()).unwrap_or_default();
        if content_hash(&text) != *hash {
            return Err(format!("{name} differs from Debian's fail2ban 1.0.2"));
        }
    }
    Ok(())
}

/// FNV-1a of the file's meaningful lines (comments and blank lines left out, each line
/// trimmed), so that an edited comment does not count as a change but an edited rule does.
pub fn content_hash(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut first = true;
    for line in text.split('\n').map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let bytes: &[u8] = if first { &[] } else { b"\n" };
        first = false;
        for byte in bytes.iter().chain(line.as_bytes()) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// One `journal:` source per `+`-separated group of a `journalmatch`: the unit of a lone
/// `_SYSTEMD_UNIT=…`, and the other `FIELD=value` matches.
pub fn journal_groups(journalmatch: &str) -> Vec<(Option<String>, Vec<String>)> {
    let mut groups = Vec::new();
    for group in journalmatch.split(" + ").flat_map(|g| g.split("\n+")) {
        let terms: Vec<&str> = group
            .split_whitespace()
            .filter(|term| *term != "+")
            .collect();
        if terms.is_empty() {
            continue;
        }
        let units: Vec<&str> = terms
            .iter()
            .filter_map(|term| term.strip_prefix("_SYSTEMD_UNIT="))
            .collect();
        let (unit, matches) = if units.len() == 1 {
            (
                Some(units[0].to_string()),
                terms
                    .iter()
                    .filter(|term| !term.starts_with("_SYSTEMD_UNIT="))
                    .map(|term| term.to_string())
                    .collect(),
            )
        } else {
            (None, terms.iter().map(|term| term.to_string()).collect())
        };
        groups.push((unit, matches));
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stock_table_matches_this_hash() {
        assert_eq!(
            content_hash("# c\n a = 1 \n\n;x\nb=2"),
            content_hash("a = 1\nb=2")
        );
        assert_ne!(content_hash("a = 1\nb=2"), content_hash("a = 1\nb=3"));
    }

    #[test]
    fn journalmatch_groups() {
        assert_eq!(
            journal_groups("_SYSTEMD_UNIT=sshd.service + _COMM=sshd"),
            [
                (Some("sshd.service".to_string()), vec![]),
                (None, vec!["_COMM=sshd".to_string()])
            ]
        );
        assert_eq!(
            journal_groups("_SYSTEMD_UNIT=fail2ban.service PRIORITY=5"),
            [(
                Some("fail2ban.service".to_string()),
                vec!["PRIORITY=5".to_string()]
            )]
        );
        assert!(journal_groups("  ").is_empty());
    }

    #[test]
    fn modes_that_fit_the_builtins() {
        let entry = |text: &str| super::super::values::entry(text).unwrap();
        assert!(modes_fit("sshd", &entry("sshd[mode=normal]")));
        assert!(modes_fit("sshd", &entry("sshd")));
        assert!(!modes_fit("sshd", &entry("sshd[mode=aggressive]")));
        assert!(modes_fit("asterisk", &entry("asterisk[mode=normal]")));
        assert!(!modes_fit("asterisk", &entry("asterisk[other=1]")));
    }
}
