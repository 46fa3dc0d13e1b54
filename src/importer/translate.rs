//! The translation itself: Fail2Ban's `[DEFAULT]`, jails and `fail2ban.conf` read through
//! [`IniStack`] and turned into a [`Plan`], each setting reported with where it was written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::action::FirewallAction;
use crate::config::ini::{IniError, IniFile, IniStack, SourceLine, Value};
use crate::config::jail::Chain;
use crate::config::ports::{Protocol, parse_port_range};
use crate::config::sections::MAX_CHAIN_NAME;
use crate::duration::{BanTime, format_duration};
use crate::jail::ignore::parse_ignore_entry;

use super::actions::{self, FirewallPart};
use super::filters;
use super::plan::{Increment, Jail, Plan, Shared, Source};
use super::report::Report;
use super::values::{self, Entry};
use super::{ImportError, ImportOptions, ImportedBan};

/// Fail2Ban's version the import reads like (what `%(fail2ban_version)s` expands to).
const FAIL2BAN_VERSION: &str = "1.0.2";

/// The chain prefix logjail names its chains with (`firewall.chain_prefix` default), which
/// bounds jail names.
const CHAIN_PREFIX: &str = "logjail";

/// Docker's container folder: json-file logs under it become container sources.
const DOCKER_CONTAINERS: &str = "/var/lib/docker/containers/";

/// Jail settings handled by the translation itself.
const HANDLED: &[&str] = &[
    "enabled",
    "filter",
    "logpath",
    "backend",
    "maxretry",
    "findtime",
    "bantime",
    "bantime.increment",
    "bantime.factor",
    "bantime.formula",
    "bantime.multipliers",
    "bantime.maxtime",
    "bantime.rndtime",
    "bantime.overalljails",
    "ignoreip",
    "ignoreself",
    "action",
    "journalmatch",
    "port",
    "protocol",
    "chain",
    "banaction",
    "banaction_allports",
    "mode",
];

/// Filter settings a jail may override; they go to a Fail2Ban filter file as options.
const FILTER_OVERRIDES: &[&str] = &[
    "failregex",
    "ignoreregex",
    "prefregex",
    "datepattern",
    "maxlines",
];

/// The default `bantime.formula` of Fail2Ban, which logjail's increment computes.
const DEFAULT_FORMULA: &str = "ban.Time * (1<<(ban.Count if ban.Count<20 else 20)) * banFactor";

pub(super) struct Translator<'a> {
    dir: &'a Path,
    options: &'a ImportOptions,
    stack: IniStack,
    pub(super) report: Report,
    pub(super) bans: Vec<ImportedBan>,
    /// Locations of values the jail being translated drew on through `%(…)s`.
    consumed: BTreeSet<SourceLine>,
    /// Logjail names given so far.
    names: BTreeSet<String>,
}

impl<'a> Translator<'a> {
    pub(super) fn new(options: &'a ImportOptions) -> Result<Translator<'a>, ImportError> {
        let dir = options.dir.as_path();
        if !dir.join("jail.conf").is_file() && !dir.join("jail.local").is_file() {
            return Err(ImportError::NotAConfiguration {
                dir: dir.to_path_buf(),
            });
        }
        let mut stack = IniStack::read_config(dir, "jail")?;
        let builtin = SourceLine {
            file: Arc::from(Path::new("(Fail2Ban built-in)")),
            line: 0,
        };
        stack.set_default("fail2ban_version", FAIL2BAN_VERSION, builtin.clone());
        stack.set_default("fail2ban_confpath", &dir.display().to_string(), builtin);
        Ok(Translator {
            dir,
            options,
            stack,
            report: Report::default(),
            bans: Vec::new(),
            consumed: BTreeSet::new(),
            names: BTreeSet::new(),
        })
    }

    pub(super) fn translate(&mut self) -> Result<Plan, ImportError> {
        let files: Vec<String> = self
            .stack
            .files()
            .iter()
            .map(|path| relative(self.dir, path))
            .collect();
        self.report.summary.push(format!(
            "Read {} (jail files, in Fail2Ban's order): {}",
            self.dir.display(),
            files.join(", ")
        ));
        let log_level = self.fail2ban_conf()?;
        let defaults = self.shared("DEFAULT", None)?;
        self.default_extras()?;
        let mut jails = Vec::new();
        let mut disabled_stock = 0;
        let mut disabled_own = Vec::new();
        let sections: Vec<String> = self
            .stack
            .sections()
            .filter(|name| *name != "INCLUDES")
            .map(str::to_string)
            .collect();
        for name in sections {
            let enabled = self
                .get(&name, "enabled")?
                .and_then(|v| values::boolean(&v.text))
                .unwrap_or(false);
            if !enabled {
                let own_file = self
                    .stack
                    .section_at(&name)
                    .is_some_and(|at| !at.file.ends_with("jail.conf"));
                if own_file {
                    disabled_own.push(name);
                } else {
                    disabled_stock += 1;
                }
                continue;
            }
            self.consumed.clear();
            if let Some(value) = self.stack.get(&name, "enabled")? {
                self.report.mapped(
                    Some(&value.at),
                    &format!("[{name}]"),
                    format!("enabled = {}", value.text),
                    "imported (jails Fail2Ban does not enable are left out)",
                );
            }
            if let Some(jail) = self.jail(&name, &defaults)? {
                jails.push(jail);
            }
        }
        self.report.summary.push(format!(
            "Imported {} enabled jail{}: {}",
            jails.len(),
            if jails.len() == 1 { "" } else { "s" },
            jails
                .iter()
                .map(|j| j.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if disabled_stock > 0 {
            self.report.summary.push(format!(
                "Left out {disabled_stock} jails of jail.conf that are not enabled (as Fail2Ban leaves them)"
            ));
        }
        if !disabled_own.is_empty() {
            self.report.summary.push(format!(
                "Left out jails your files define but do not enable: {}",
                disabled_own.join(", ")
            ));
        }
        self.locking_options()?;
        Ok(Plan {
            source: self.dir.to_path_buf(),
            defaults,
            jails,
            log_level,
        })
    }

    fn get(&mut self, section: &str, option: &str) -> Result<Option<Value>, IniError> {
        let value = self.stack.get(section, option)?;
        if let Some(value) = &value {
            self.consumed.extend(value.via.iter().cloned());
        }
        Ok(value)
    }

    /// Whether `section` sets `option` itself (not through `[DEFAULT]`).
    fn owns(&self, section: &str, option: &str) -> bool {
        section == "DEFAULT"
            || self
                .stack
                .own_options(section)
                .is_some_and(|own| own.contains(option))
    }

    /// A "not mapped" line for `option` of `section`, unless it was made for `[DEFAULT]`
    /// already (see [`Self::reports_here`]).
    fn not_mapped_here(
        &mut self,
        section: &str,
        option: &str,
        at: Option<&SourceLine>,
        scope: &str,
        setting: impl Into<String>,
        message: impl Into<String>,
    ) {
        if self.reports_here(section, option) {
            self.report.not_mapped(at, scope, setting, message);
        }
    }

    /// Whether a problem with `option` is reported for `section`: for `[DEFAULT]` and for
    /// jails that set it themselves (a `[DEFAULT]` value is reported once, under `[DEFAULT]`).
    fn reports_here(&self, section: &str, option: &str) -> bool {
        section == "DEFAULT" || self.owns(section, option)
    }

    /// bantime, findtime, maxretry, ignoreip, ignoreself and the `bantime.*` increment of
    /// `section`. With `defaults`, only what differs from them is kept (and reported when the
    /// jail sets it itself or it differs).
    fn shared(&mut self, section: &str, defaults: Option<&Shared>) -> Result<Shared, IniError> {
        let scope = format!("[{section}]");
        let mut shared = Shared::default();
        let should_report = |this: &Self, key: &str, differs: bool| {
            defaults.is_none() || this.owns(section, key) || differs
        };

        if let Some(value) = self.get(section, "bantime")? {
            match values::seconds(&value.text) {
                Some(seconds) if seconds < 0 => shared.bantime = Some(BanTime::Permanent),
                Some(seconds) if seconds > 0 => {
                    shared.bantime = Some(BanTime::Finite(Duration::from_secs(seconds as u64)))
                }
                _ => self.not_mapped_here(
                    section,
                    "bantime",
                    Some(&value.at),
                    &scope,
                    format!("bantime = {}", value.text),
                    "not a ban time logjail can use (a positive time, or -1 for permanent); the \
                     default stays",
                ),
            }
            let differs = defaults.is_some_and(|d| d.bantime != shared.bantime);
            if let Some(bantime) = shared.bantime
                && should_report(self, "bantime", differs)
            {
                let shown = match bantime {
                    BanTime::Permanent => "-1 (permanent)".to_string(),
                    BanTime::Finite(d) => format_duration(d),
                };
                self.report.mapped(
                    Some(&value.at),
                    &scope,
                    format!("bantime = {}", value.text),
                    format!("bantime: {shown}"),
                );
            }
        }
        if let Some(value) = self.get(section, "findtime")? {
            match values::seconds(&value.text) {
                Some(seconds) if seconds > 0 => {
                    shared.findtime = Some(Duration::from_secs(seconds as u64))
                }
                _ => self.not_mapped_here(
                    section,
                    "findtime",
                    Some(&value.at),
                    &scope,
                    format!("findtime = {}", value.text),
                    "not a positive time; the default stays",
                ),
            }
            let differs = defaults.is_some_and(|d| d.findtime != shared.findtime);
            if let Some(findtime) = shared.findtime
                && should_report(self, "findtime", differs)
            {
                self.report.mapped(
                    Some(&value.at),
                    &scope,
                    format!("findtime = {}", value.text),
                    format!("findtime: {}", format_duration(findtime)),
                );
            }
        }
        if let Some(value) = self.get(section, "maxretry")? {
            match value.text.trim().parse::<u32>() {
                Ok(n) if n >= 1 => shared.maxretry = Some(n),
                _ => self.not_mapped_here(
                    section,
                    "maxretry",
                    Some(&value.at),
                    &scope,
                    format!("maxretry = {}", value.text),
                    "not a whole number of at least 1; the default stays",
                ),
            }
            let differs = defaults.is_some_and(|d| d.maxretry != shared.maxretry);
            if let Some(maxretry) = shared.maxretry
                && should_report(self, "maxretry", differs)
            {
                self.report.mapped(
                    Some(&value.at),
                    &scope,
                    format!("maxretry = {}", value.text),
                    format!("maxretry: {maxretry}"),
                );
            }
        }
        if let Some(value) = self.get(section, "ignoreip")? {
            let mut networks: Vec<IpNet> = Vec::new();
            for word in values::words(&value.text) {
                match parse_ignore_entry(word) {
                    Ok(network) => {
                        if !networks.contains(&network) {
                            networks.push(network);
                        }
                    }
                    Err(error) => self.not_mapped_here(
                        section,
                        "ignoreip",
                        Some(&value.at),
                        &scope,
                        format!("ignoreip entry `{word}`"),
                        format!("{error}: left out (logjail never resolves host names)"),
                    ),
                }
            }
            shared.ignoreip = Some(networks);
            let differs = defaults.is_some_and(|d| d.ignoreip != shared.ignoreip);
            if should_report(self, "ignoreip", differs) {
                let list: Vec<String> = shared
                    .ignoreip
                    .iter()
                    .flatten()
                    .map(|n| {
                        if n.prefix_len() == n.max_prefix_len() {
                            n.addr().to_string()
                        } else {
                            n.to_string()
                        }
                    })
                    .collect();
                self.report.mapped(
                    Some(&value.at),
                    &scope,
                    format!("ignoreip = {}", one_line(&value.text)),
                    format!("ignoreip: [{}]", list.join(", ")),
                );
            }
        }
        if let Some(value) = self.get(section, "ignoreself")? {
            shared.ignoreself = values::boolean(&value.text);
            let differs = defaults.is_some_and(|d| d.ignoreself != shared.ignoreself);
            if let Some(ignoreself) = shared.ignoreself
                && should_report(self, "ignoreself", differs)
            {
                self.report.mapped(
                    Some(&value.at),
                    &scope,
                    format!("ignoreself = {}", value.text),
                    format!("ignoreself: {ignoreself}"),
                );
            }
        }
        let increment = self.increment(section, defaults.and_then(|d| d.increment.as_ref()))?;
        shared.increment = (!increment.is_empty()).then_some(increment);

        if let Some(defaults) = defaults {
            // A jail keeps only what differs from `defaults:`.
            if shared.bantime == defaults.bantime {
                shared.bantime = None;
            }
            if shared.findtime == defaults.findtime {
                shared.findtime = None;
            }
            if shared.maxretry == defaults.maxretry {
                shared.maxretry = None;
            }
            if shared.ignoreip == defaults.ignoreip {
                shared.ignoreip = None;
            }
            if shared.ignoreself == defaults.ignoreself {
                shared.ignoreself = None;
            }
        }
        Ok(shared)
    }

    /// The `bantime.*` settings; with `defaults`, only the keys that differ from them (logjail
    /// merges `increment:` key by key, as Fail2Ban reads each `bantime.*` on its own).
    fn increment(
        &mut self,
        section: &str,
        defaults: Option<&Increment>,
    ) -> Result<Increment, IniError> {
        let scope = format!("[{section}]");
        let base = defaults.cloned().unwrap_or_default();
        let jail = section != "DEFAULT";
        let mut increment = Increment::default();
        let report_it =
            |this: &mut Self, key: &str, value: &Value, message: String, differs: bool| {
                if !jail || this.owns(section, key) || differs {
                    this.report.mapped(
                        Some(&value.at),
                        &scope,
                        format!("{key} = {}", value.text),
                        message,
                    );
                }
            };
        if let Some(value) = self.get(section, "bantime.increment")? {
            increment.enabled = values::boolean(&value.text);
            let differs = increment.enabled != base.enabled;
            report_it(
                self,
                "bantime.increment",
                &value,
                format!(
                    "increment: {{enabled: {}}}",
                    increment.enabled.unwrap_or(false)
                ),
                differs,
            );
        }
        if let Some(value) = self.get(section, "bantime.factor")? {
            match value.text.trim().parse::<f64>() {
                Ok(factor) if factor.is_finite() && factor > 0.0 => {
                    increment.factor = Some(factor);
                    let differs = increment.factor != base.factor;
                    report_it(
                        self,
                        "bantime.factor",
                        &value,
                        format!("increment: {{factor: {factor}}}"),
                        differs,
                    );
                }
                _ => self.not_mapped_here(
                    section,
                    "bantime.factor",
                    Some(&value.at),
                    &scope,
                    format!("bantime.factor = {}", value.text),
                    "not a positive number; the default factor (1) stays",
                ),
            }
        }
        if let Some(value) = self.get(section, "bantime.formula")? {
            let normalized: String = value.text.split_whitespace().collect();
            let default: String = DEFAULT_FORMULA.split_whitespace().collect();
            if normalized == default {
                if !jail || self.owns(section, "bantime.formula") {
                    self.report.mapped(
                        Some(&value.at),
                        &scope,
                        format!("bantime.formula = {}", value.text),
                        "Fail2Ban's default formula, which is logjail's: bantime × factor × 2^(earlier bans)",
                    );
                }
            } else {
                self.not_mapped_here(section, "bantime.formula", 
                    Some(&value.at),
                    &scope,
                    format!("bantime.formula = {}", one_line(&value.text)),
                    "logjail runs no Python formula: it computes bantime × factor × 2^(earlier bans), \
                     or uses `multipliers:`; set those to come close",
                );
            }
        }
        if let Some(value) = self.get(section, "bantime.multipliers")? {
            let parsed: Option<Vec<u32>> = values::words(&value.text)
                .iter()
                .map(|w| w.parse::<u32>().ok().filter(|n| *n >= 1))
                .collect();
            match parsed {
                Some(list) if !list.is_empty() => {
                    let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
                    increment.multipliers = Some(list);
                    let differs = increment.multipliers != base.multipliers;
                    report_it(
                        self,
                        "bantime.multipliers",
                        &value,
                        format!("increment: {{multipliers: [{}]}}", shown.join(", ")),
                        differs,
                    );
                }
                Some(_) => {}
                None => self.not_mapped_here(
                    section,
                    "bantime.multipliers",
                    Some(&value.at),
                    &scope,
                    format!("bantime.multipliers = {}", value.text),
                    "logjail's multipliers are whole numbers of at least 1",
                ),
            }
        }
        for (key, slot) in [("bantime.maxtime", 0), ("bantime.rndtime", 1)] {
            let Some(value) = self.get(section, key)? else {
                continue;
            };
            if value.text.trim().is_empty() {
                continue;
            }
            match values::seconds(&value.text) {
                Some(seconds) if seconds > 0 => {
                    let duration = Some(Duration::from_secs(seconds as u64));
                    let (field, old) = if slot == 0 {
                        (&mut increment.maxtime, base.maxtime)
                    } else {
                        (&mut increment.rndtime, base.rndtime)
                    };
                    *field = duration;
                    let name = key.trim_start_matches("bantime.");
                    report_it(
                        self,
                        key,
                        &value,
                        format!(
                            "increment: {{{name}: {}}}",
                            format_duration(Duration::from_secs(seconds as u64))
                        ),
                        duration != old,
                    );
                }
                _ => self.not_mapped_here(
                    section,
                    key,
                    Some(&value.at),
                    &scope,
                    format!("{key} = {}", value.text),
                    "not a positive time",
                ),
            }
        }
        if let Some(value) = self.get(section, "bantime.overalljails")? {
            increment.overalljails = values::boolean(&value.text);
            let differs = increment.overalljails != base.overalljails;
            report_it(
                self,
                "bantime.overalljails",
                &value,
                format!(
                    "increment: {{overalljails: {}}}",
                    increment.overalljails.unwrap_or(false)
                ),
                differs,
            );
        }
        if jail {
            if increment.enabled == base.enabled {
                increment.enabled = None;
            }
            if increment.factor == base.factor {
                increment.factor = None;
            }
            if increment.multipliers == base.multipliers {
                increment.multipliers = None;
            }
            if increment.maxtime == base.maxtime {
                increment.maxtime = None;
            }
            if increment.rndtime == base.rndtime {
                increment.rndtime = None;
            }
            if increment.overalljails == base.overalljails {
                increment.overalljails = None;
            }
        }
        Ok(increment)
    }

    /// `[DEFAULT]` settings that do not apply to logjail, said once.
    fn default_extras(&mut self) -> Result<(), IniError> {
        for key in [
            "usedns",
            "logencoding",
            "ignorecommand",
            "maxmatches",
            "logtimezone",
            "ignorecache",
        ] {
            if let Some(value) = self.get("DEFAULT", key)? {
                self.inapplicable("DEFAULT", key, &value);
            }
        }
        Ok(())
    }

    /// A line for a setting logjail does not need or cannot honour.
    fn inapplicable(&mut self, section: &str, key: &str, value: &Value) {
        let scope = format!("[{section}]");
        let setting = format!("{key} = {}", one_line(&value.text));
        let text = value.text.trim().to_ascii_lowercase();
        match key {
            "usedns" if text == "no" || text == "raw" => self.report.mapped(
                Some(&value.at),
                &scope,
                setting,
                "logjail never resolves host names: <HOST> matches addresses only, as with usedns = no",
            ),
            "usedns" => self.report.approximate(
                Some(&value.at),
                &scope,
                setting,
                "logjail never resolves host names (an attacker chooses them): <HOST> matches \
                 addresses only, as with usedns = no; lines naming a host name are no failure",
            ),
            "logencoding" if matches!(text.as_str(), "" | "auto" | "utf-8" | "utf8") => self.report.mapped(
                Some(&value.at),
                &scope,
                setting,
                "logjail reads logs as UTF-8, invalid bytes replaced",
            ),
            "logencoding" => self.report.approximate(
                Some(&value.at),
                &scope,
                setting,
                "logjail reads every log as UTF-8 (invalid bytes replaced); ASCII text matches \
                 the same",
            ),
            "ignorecommand" if text.is_empty() => {}
            "ignorecommand" => self.report.not_mapped(
                Some(&value.at),
                &scope,
                setting,
                "logjail runs no command to decide whether to ban; put those addresses in ignoreip",
            ),
            "maxmatches" => self.report.not_mapped(
                Some(&value.at),
                &scope,
                setting,
                "logjail keeps the matched lines of each host in bounded buffers (see README, \
                 \"A flood of distinct addresses\"); nothing to set",
            ),
            "logtimezone" => self.report.not_mapped(
                Some(&value.at),
                &scope,
                setting,
                "logjail reads times without a zone as the host's local time; no zone can be set",
            ),
            "ignorecache" => self.report.not_mapped(
                Some(&value.at),
                &scope,
                setting,
                "only used with ignorecommand, which logjail does not run",
            ),
            _ => {}
        }
    }

    /// `fail2ban.conf` and `.local`: the log level carries over, the rest is said not to apply.
    fn fail2ban_conf(&mut self) -> Result<Option<&'static str>, IniError> {
        let stack = IniStack::read_config(self.dir, "fail2ban")?;
        if stack.files().is_empty() {
            return Ok(None);
        }
        let scope = "fail2ban.conf";
        let mut level = None;
        let section = "Definition";
        let get = |key: &str| stack.get(section, key);
        if let Some(value) = get("loglevel")? {
            let mapped = match value.text.trim().to_ascii_uppercase().as_str() {
                "CRITICAL" | "ERROR" | "50" | "40" => Some("error"),
                "WARNING" | "WARN" | "30" => Some("warn"),
                "NOTICE" | "INFO" | "25" | "20" => Some("info"),
                "DEBUG" | "10" => Some("debug"),
                "TRACEDEBUG" | "HEAVYDEBUG" | "7" | "5" => Some("trace"),
                _ => None,
            };
            match mapped {
                Some(mapped) => {
                    self.report.mapped(
                        Some(&value.at),
                        scope,
                        format!("loglevel = {}", value.text),
                        format!("log: {{level: {mapped}}}"),
                    );
                    level = (mapped != "info").then_some(mapped);
                }
                None => self.report.not_mapped(
                    Some(&value.at),
                    scope,
                    format!("loglevel = {}", value.text),
                    "not a level logjail knows; it logs at info",
                ),
            }
        }
        let notes: &[(&str, &str)] = &[
            (
                "logtarget",
                "logjail logs to standard error (the journal or `docker logs`), as text or JSON \
                 (`log: {format: json}`); it keeps no log file, so nothing to rotate (`fail2ban-client set logtarget` \
                 and `flushlogs` are answered and do nothing)",
            ),
            (
                "syslogsocket",
                "logjail does not write to syslog; its standard error reaches the journal under systemd",
            ),
            (
                "socket",
                "logjail's control socket is /run/logjail/logjail.sock (`control: {socket: …}`); \
                 the `fail2ban-client` link to logjail talks to that one",
            ),
            (
                "pidfile",
                "logjail writes no pid file; it runs in the foreground under its service manager",
            ),
            (
                "allowipv6",
                "logjail always handles IPv6 (ip6tables, IPv6 sets)",
            ),
            (
                "dbfile",
                "logjail keeps bans, ban history and read positions in its own store \
                 (`store: {path: /var/lib/logjail/logjail.db}`); Fail2Ban's database is not imported",
            ),
            (
                "dbpurgeage",
                "logjail keeps ban history as long as increments need it; nothing to set",
            ),
            (
                "dbmaxmatches",
                "logjail stores the matched lines of each ban, bounded; nothing to set",
            ),
        ];
        for (key, why) in notes {
            if let Some(value) = get(key)? {
                self.report.not_mapped(
                    Some(&value.at),
                    scope,
                    format!("{key} = {}", value.text),
                    *why,
                );
            }
        }
        Ok(level)
    }

    /// `lockingopt` set in `action.d/*.local` (Debian users put it in `iptables-common.local`).
    fn locking_options(&mut self) -> Result<(), IniError> {
        let folder = self.dir.join("action.d");
        let Ok(entries) = std::fs::read_dir(&folder) else {
            return Ok(());
        };
        let mut locals: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "local"))
            .collect();
        locals.sort();
        for path in locals {
            let file = IniFile::read(&path)?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let orphan = !path.with_extension("conf").is_file();
            for section in
                std::iter::once(&file.defaults).chain(file.sections.iter().map(|s| &s.options))
            {
                if let Some(value) = section.get("lockingopt") {
                    let extra = if orphan {
                        format!(
                            " ({name} has no .conf next to it: Fail2Ban 1.0 reads iptables.conf, \
                             so it ignores this file too)"
                        )
                    } else {
                        String::new()
                    };
                    self.report.not_mapped(
                        Some(&value.at),
                        &format!("action.d/{name}"),
                        format!("lockingopt = {}", value.text),
                        format!(
                            "logjail calls iptables itself and always waits for the xtables lock (-w); nothing to set{extra}"
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// One enabled jail.
    fn jail(&mut self, name: &str, defaults: &Shared) -> Result<Option<Jail>, ImportError> {
        let scope = format!("[{name}]");
        let at = self
            .stack
            .section_at(name)
            .map(|at| format!("{}:{}", relative(self.dir, &at.file), at.line))
            .unwrap_or_default();
        let logjail_name = self.logjail_name(name);
        let section_at = self.stack.section_at(name).cloned();
        if logjail_name != name {
            self.report.approximate(
                section_at.as_ref(),
                &scope,
                "jail name",
                format!(
                    "renamed \"{logjail_name}\": logjail's names are letters, digits, - and _, at most {} long",
                    MAX_CHAIN_NAME - CHAIN_PREFIX.len() - 1
                ),
            );
        }
        let backend = self.get(name, "backend")?;
        let backend_entry = backend
            .as_ref()
            .and_then(|value| values::entry(&value.text).ok());
        let journal = backend_entry
            .as_ref()
            .is_some_and(|entry| entry.name.starts_with("systemd"));

        // The filter, with the filter settings the jail overrides.
        let mut overrides = Vec::new();
        for key in FILTER_OVERRIDES {
            if self.owns(name, key)
                && let Some(value) = self.get(name, key)?
            {
                overrides.push((key.to_string(), value.text.clone(), value.at.clone()));
            }
        }
        let filter_value = self.get(name, "filter")?;
        let mut journalmatch = None;
        let filter = match filter_value.as_ref().filter(|v| !v.text.trim().is_empty()) {
            None => {
                self.report.mapped(
                    filter_value.as_ref().map(|v| &v.at).or(section_at.as_ref()),
                    &scope,
                    "filter (none)",
                    "manual: true: a jail without a filter bans only what is banned by hand",
                );
                None
            }
            Some(value) => {
                let entry = match values::entry(&value.text) {
                    Ok(entry) => entry,
                    Err(message) => {
                        self.report.not_mapped(
                            Some(&value.at),
                            &scope,
                            format!("filter = {}", value.text),
                            format!("{message} (Fail2Ban refuses it); the jail is not imported"),
                        );
                        return Ok(None);
                    }
                };
                let at = value.at.clone();
                match filters::choose(
                    self.dir,
                    name,
                    &entry,
                    &at,
                    &overrides,
                    self.options.fail2ban_filters,
                    &mut self.report,
                )? {
                    None => return Ok(None),
                    Some(choice) => {
                        journalmatch = choice.journalmatch;
                        Some(choice.plan)
                    }
                }
            }
        };
        let manual = filter.is_none();

        // Where the lines come from.
        let mut sources = Vec::new();
        if !manual {
            if journal {
                sources = self.journal_sources(
                    name,
                    backend.as_ref(),
                    backend_entry.as_ref(),
                    journalmatch,
                )?;
            } else {
                if let Some(value) = &backend {
                    let text = value.text.trim();
                    if !text.is_empty()
                        && !matches!(text, "auto" | "polling" | "pyinotify" | "gamin")
                    {
                        self.report.not_mapped(
                            Some(&value.at),
                            &scope,
                            format!("backend = {text}"),
                            "not a Fail2Ban backend logjail knows; its logpath is followed as files",
                        );
                    } else if self.owns(name, "backend") {
                        self.report.mapped(
                            Some(&value.at),
                            &scope,
                            format!("backend = {text}"),
                            "logjail follows files with inotify, through rotation",
                        );
                    }
                }
                sources = self.file_sources(name)?;
            }
        } else if let Some(value) = self.get(name, "logpath")? {
            self.report.not_mapped(
                Some(&value.at),
                &scope,
                format!("logpath = {}", one_line(&value.text)),
                "a jail without a filter reads no log, in Fail2Ban as in logjail",
            );
        }

        let shared = self.shared(name, Some(defaults))?;
        let (ports, protocol, chains, action) = self.actions(name, &logjail_name, &sources)?;
        self.own_extras(name)?;
        Ok(Some(Jail {
            name: logjail_name,
            fail2ban_name: name.to_string(),
            at,
            filter,
            sources,
            shared,
            ports,
            protocol,
            chains,
            action,
        }))
    }

    /// A logjail name for Fail2Ban's jail `name`: the same when it fits, else cleaned and
    /// shortened, never one given before.
    fn logjail_name(&mut self, name: &str) -> String {
        let limit = MAX_CHAIN_NAME - CHAIN_PREFIX.len() - 1;
        let mut cleaned: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        if !cleaned.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            cleaned.insert(0, 'j');
        }
        cleaned.truncate(limit);
        let mut candidate = cleaned.clone();
        let mut counter = 2;
        while self.names.contains(&candidate) {
            let suffix = format!("-{counter}");
            let mut base = cleaned.clone();
            base.truncate(limit - suffix.len());
            candidate = format!("{base}{suffix}");
            counter += 1;
        }
        self.names.insert(candidate.clone());
        candidate
    }

    fn file_sources(&mut self, name: &str) -> Result<Vec<Source>, IniError> {
        let scope = format!("[{name}]");
        let Some(value) = self.get(name, "logpath")? else {
            self.report.not_mapped(
                self.stack.section_at(name).cloned().as_ref(),
                &scope,
                "logpath (none)",
                "no log to read: Fail2Ban refuses such a jail; logjail runs it on the containers \
                 labelled `logjail.jails=NAME` only",
            );
            return Ok(Vec::new());
        };
        let mut sources = Vec::new();
        for line in value.text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            // `PATH tail` / `PATH head`: where Fail2Ban starts reading a new file.
            let path = match line.rsplit_once(' ') {
                Some((path, "tail" | "head")) => path.trim(),
                _ => line,
            };
            if let Some(rest) = path.strip_prefix(DOCKER_CONTAINERS) {
                if rest.starts_with('*') && path.ends_with(".log") {
                    if !sources.contains(&Source::AllContainers) {
                        sources.push(Source::AllContainers);
                    }
                    self.report.mapped(
                        Some(&value.at),
                        &scope,
                        format!("logpath = {path}"),
                        "container: {name: \"*\"}: every container's log, through the Docker API \
                         (json-file read directly, rotation and restarts followed); narrow it with \
                         name, image or label",
                    );
                } else {
                    self.report.not_mapped(
                        Some(&value.at),
                        &scope,
                        format!("logpath = {path}"),
                        "one container's log by id: logjail selects containers by name, image or \
                         label (an id changes when the container is re-created); add \
                         `- container: {name: NAME}` to this jail",
                    );
                }
                continue;
            }
            if !path.starts_with('/') {
                self.report.not_mapped(
                    Some(&value.at),
                    &scope,
                    format!("logpath = {path}"),
                    "not an absolute path; logjail needs one",
                );
                continue;
            }
            if path.ends_with("/fail2ban.log") {
                self.report.approximate(
                    Some(&value.at),
                    &scope,
                    format!("logpath = {path}"),
                    "Fail2Ban's own log: once logjail replaces Fail2Ban nothing writes it. The \
                     import keeps the file (the built-in recidive filter reads Fail2Ban's and \
                     logjail's ban lines alike); point this jail at logjail's log (its journal \
                     unit or container) to count logjail's bans",
                );
            }
            match crate::config::Glob::for_path(path) {
                Ok(_) => {
                    sources.push(Source::File(path.to_string()));
                    self.report.mapped(
                        Some(&value.at),
                        &scope,
                        format!("logpath = {line}"),
                        format!(
                            "file: {path} (optional: Fail2Ban leaves out a jail whose logs are \
                             missing; logjail runs it without that file)"
                        ),
                    );
                }
                Err(message) => self.report.not_mapped(
                    Some(&value.at),
                    &scope,
                    format!("logpath = {path}"),
                    message,
                ),
            }
        }
        Ok(sources)
    }

    fn journal_sources(
        &mut self,
        name: &str,
        backend: Option<&Value>,
        entry: Option<&Entry>,
        filter_match: Option<(String, SourceLine)>,
    ) -> Result<Vec<Source>, IniError> {
        let scope = format!("[{name}]");
        let directory = entry
            .and_then(|e| e.option("journalpath"))
            .map(str::to_string);
        if let (Some(backend), Some(entry)) = (backend, entry) {
            for (key, _) in &entry.options {
                if key != "journalpath" {
                    self.report.not_mapped(
                        Some(&backend.at),
                        &scope,
                        format!("backend option {key}"),
                        "logjail reads the system journal (or journalpath) with journalctl; this \
                         option has no counterpart",
                    );
                }
            }
        }
        if let Some(value) = self.get(name, "logpath")? {
            self.report.not_mapped(
                Some(&value.at),
                &scope,
                format!("logpath = {}", one_line(&value.text)),
                "not read with backend = systemd, in Fail2Ban as in logjail",
            );
        }
        let jail_match = if self.owns(name, "journalmatch") {
            self.get(name, "journalmatch")?
                .map(|v| (v.text.trim().to_string(), v.at))
        } else {
            None
        };
        let (text, at) = match jail_match.or(filter_match) {
            Some(found) => found,
            None => {
                self.report.approximate(
                    backend.map(|b| &b.at),
                    &scope,
                    "backend = systemd",
                    "journal: {}: the filter names no journalmatch, so the whole journal is read, \
                     as Fail2Ban does",
                );
                return Ok(vec![Source::Journal {
                    unit: None,
                    matches: Vec::new(),
                    directory,
                }]);
            }
        };
        let groups = filters::journal_groups(&text);
        let sources: Vec<Source> = groups
            .into_iter()
            .map(|(unit, matches)| Source::Journal {
                unit,
                matches,
                directory: directory.clone(),
            })
            .collect();
        self.report.mapped(
            Some(&at),
            &scope,
            format!("journalmatch = {text}"),
            format!(
                "{} journal source{} (one per `+` alternative), with backend = systemd",
                sources.len(),
                if sources.len() == 1 { "" } else { "s" }
            ),
        );
        Ok(sources)
    }

    /// Ports, protocol, chains and verdict from the jail's actions; address files read.
    #[allow(clippy::type_complexity)]
    fn actions(
        &mut self,
        name: &str,
        logjail_name: &str,
        sources: &[Source],
    ) -> Result<
        (
            Option<Vec<String>>,
            Option<Protocol>,
            Option<Vec<Chain>>,
            Option<FirewallAction>,
        ),
        ImportError,
    > {
        let scope = format!("[{name}]");
        let Some(value) = self.get(name, "action")? else {
            return Ok((None, None, None, Some(FirewallAction::Log)));
        };
        let mut parts: Vec<FirewallPart> = Vec::new();
        for text in values::split_entries(&value.text) {
            let entry = match values::entry(&text) {
                Ok(entry) => entry,
                Err(message) => {
                    self.report.not_mapped(
                        Some(&value.at),
                        &scope,
                        format!("action {text}"),
                        format!("{message} (Fail2Ban refuses it)"),
                    );
                    continue;
                }
            };
            let classified =
                actions::classify(self.dir, name, &entry, &value.at, &mut self.report)?;
            if let Some(part) = classified.firewall {
                parts.push(part);
            }
            if let Some(file) = classified.address_file {
                self.import_address_file(name, logjail_name, &file.written, &file.at);
            }
        }
        for key in ["port", "protocol", "chain", "banaction"] {
            if self.owns(name, key)
                && let Some(own) = self.get(name, key)?
            {
                self.report.mapped(
                    Some(&own.at),
                    &scope,
                    format!("{key} = {}", one_line(&own.text)),
                    "used by the jail's actions (see their lines)",
                );
            }
        }
        if parts.is_empty() {
            self.report.approximate(
                Some(&value.at),
                &scope,
                "action (no firewall action)",
                "none of its actions blocks in the firewall: logjail runs the jail with `action: \
                 log` (bans are decided, logged and kept, nothing is blocked)",
            );
            return Ok((None, None, None, Some(FirewallAction::Log)));
        }
        // Ports: every port if any action blocks every port, else all ports named.
        let mut ports: Option<Vec<String>> = Some(Vec::new());
        for part in &parts {
            match (&mut ports, &part.ports) {
                (_, None) => ports = None,
                (Some(list), Some(words)) => {
                    for word in words {
                        if !list.contains(word) {
                            list.push(word.clone());
                        }
                    }
                }
                (None, Some(_)) => {}
            }
        }
        if let Some(list) = ports.take() {
            let mut known = Vec::new();
            let mut unknown = Vec::new();
            for word in list {
                match port_word(&word) {
                    Some(word) => known.push(word),
                    None => unknown.push(word),
                }
            }
            if !unknown.is_empty() {
                self.report.not_mapped(
                    Some(&value.at),
                    &scope,
                    format!("port {}", unknown.join(",")),
                    "not a port number, range or service logjail or /etc/services knows; the ban \
                     covers every port instead",
                );
                ports = None;
            } else {
                ports = Some(known);
            }
        }
        let mut protocols: BTreeSet<String> = BTreeSet::new();
        for part in &parts {
            protocols.extend(part.protocols.iter().cloned());
        }
        let protocol = match (
            protocols.contains("tcp"),
            protocols.contains("udp"),
            protocols.len(),
        ) {
            (true, false, 1) => Some(Protocol::Tcp),
            (false, true, 1) => Some(Protocol::Udp),
            (true, true, 2) => Some(Protocol::All),
            (_, _, 0) => None,
            _ => {
                self.report.approximate(
                    Some(&value.at),
                    &scope,
                    format!(
                        "protocol {}",
                        protocols.iter().cloned().collect::<Vec<_>>().join(",")
                    ),
                    "logjail bans tcp, udp or every protocol: the ban covers every protocol",
                );
                Some(Protocol::All)
            }
        };
        let mut chains: Vec<Chain> = parts.iter().filter_map(|p| p.chain).collect();
        chains.sort();
        chains.dedup();
        let chains = (!chains.is_empty()).then_some(chains);
        if sources.contains(&Source::AllContainers)
            && chains.as_deref() == Some(&[Chain::Input][..])
        {
            self.report.approximate(
                Some(&value.at),
                &scope,
                "chain INPUT with container logs",
                "Fail2Ban banned in INPUT, which published container ports never reach; the \
                 import keeps `chains: [input]`: add docker-user to ban where containers' \
                 traffic goes",
            );
        }
        let distinct_ports: BTreeSet<Option<Vec<String>>> =
            parts.iter().map(|p| p.ports.clone()).collect();
        if distinct_ports.len() > 1 {
            self.report.approximate(
                Some(&value.at),
                &scope,
                "action (ports per action)",
                "its actions block different ports (per protocol); logjail's jail blocks all of \
                 them on every protocol named",
            );
        }
        // A blocktype without a counterpart (already reported) must not become a ban that
        // blocks what Fail2Ban let through (`RETURN` in an allow list): such a jail only logs.
        if parts.iter().any(|p| p.verdict.is_none()) {
            return Ok((ports, protocol, chains, Some(FirewallAction::Log)));
        }
        let verdicts: Vec<FirewallAction> = parts.iter().filter_map(|p| p.verdict).collect();
        let action = verdicts.first().copied();
        if verdicts.iter().any(|v| Some(*v) != action) {
            self.report.approximate(
                Some(&value.at),
                &scope,
                "action (several verdicts)",
                format!(
                    "a logjail jail has one verdict: {} (the first action's)",
                    action.map(|a| a.to_string()).unwrap_or_default()
                ),
            );
        }
        if action
            == Some(FirewallAction::Reject(
                crate::config::action::RejectWith::TcpReset,
            ))
            && protocol != Some(Protocol::Tcp)
        {
            self.report.approximate(
                Some(&value.at),
                &scope,
                "blocktype tcp-reset",
                "tcp-reset needs protocol tcp in logjail; `reject` (icmp-port-unreachable) is used",
            );
            return Ok((
                ports,
                protocol,
                chains,
                Some(FirewallAction::Reject(
                    crate::config::action::RejectWith::IcmpPortUnreachable,
                )),
            ));
        }
        Ok((ports, protocol, chains, action))
    }

    /// The addresses an action's file holds, as bans of the jail, once.
    fn import_address_file(
        &mut self,
        name: &str,
        logjail_name: &str,
        written: &Path,
        at: &SourceLine,
    ) {
        let candidates: Vec<PathBuf> = match written.strip_prefix("/etc/fail2ban") {
            Ok(rest) if self.dir != Path::new("/etc/fail2ban") => {
                vec![self.dir.join(rest), written.to_path_buf()]
            }
            _ => vec![written.to_path_buf()],
        };
        let Some(path) = candidates.iter().find(|p| p.is_file()) else {
            self.report.summary.push(format!(
                "[{name}]: its action keeps addresses in {}, which does not exist here: no bans imported",
                written.display()
            ));
            return;
        };
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(error) => {
                self.report.summary.push(format!(
                    "[{name}]: cannot read {}: {error}; no bans imported",
                    path.display()
                ));
                return;
            }
        };
        let file: Arc<Path> = Arc::from(path.as_path());
        let mut imported = 0;
        let mut repeated = 0;
        let mut refused: Vec<String> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let word = line.split_whitespace().next().unwrap_or("");
            if word.is_empty() || word.starts_with('#') {
                continue;
            }
            match crate::address::parse_client(word) {
                Ok(ip) => {
                    if self
                        .bans
                        .iter()
                        .any(|b: &ImportedBan| b.jail == logjail_name && b.ip == ip)
                    {
                        repeated += 1;
                        continue;
                    }
                    self.bans.push(ImportedBan {
                        jail: logjail_name.to_string(),
                        ip,
                        at: SourceLine {
                            file: file.clone(),
                            line: index + 1,
                        },
                    });
                    imported += 1;
                }
                Err(error) => refused.push(format!("line {}: {error}", index + 1)),
            }
        }
        let mut line = format!(
            "[{name}]: {imported} address{} in {} (kept by the action at {at}) become bans of jail \
             {logjail_name}, applied once with `logjail import-bans FILE`",
            if imported == 1 { "" } else { "es" },
            path.display()
        );
        if repeated > 0 {
            line.push_str(&format!("; {repeated} repeated line(s) counted once"));
        }
        if !refused.is_empty() {
            line.push_str(&format!(
                "; {} line(s) left out ({})",
                refused.len(),
                refused
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        self.report.summary.push(line);
    }

    /// The jail's own settings that are neither mapped above nor drawn on by other values.
    fn own_extras(&mut self, name: &str) -> Result<(), IniError> {
        let Some(own) = self.stack.own_options(name).cloned() else {
            return Ok(());
        };
        let scope = format!("[{name}]");
        for (key, raw) in own.iter() {
            if HANDLED.contains(&key)
                || FILTER_OVERRIDES.contains(&key)
                || key.starts_with("known/")
            {
                continue;
            }
            if matches!(
                key,
                "usedns"
                    | "logencoding"
                    | "ignorecommand"
                    | "maxmatches"
                    | "logtimezone"
                    | "ignorecache"
            ) {
                if let Some(value) = self.get(name, key)? {
                    self.inapplicable(name, key, &value);
                }
                continue;
            }
            if self.consumed.contains(&raw.at) || key.starts_with("action_") {
                continue;
            }
            self.report.not_mapped(
                Some(&raw.at),
                &scope,
                format!("{key} = {}", one_line(&raw.text)),
                "not a jail setting logjail knows (a value other settings can refer to, unused here)",
            );
        }
        Ok(())
    }
}

/// A port word logjail's `ports:` takes: as written when logjail knows it, else the number
/// `/etc/services` gives a service name.
fn port_word(word: &str) -> Option<String> {
    if parse_port_range(word).is_ok() {
        return Some(word.to_string());
    }
    let services = std::fs::read_to_string("/etc/services").ok()?;
    let lookup = |name: &str| -> Option<u16> {
        services.lines().find_map(|line| {
            let line = line.split('#').next()?;
            let mut fields = line.split_whitespace();
            let service = fields.next()?;
            let port = fields.next()?.split('/').next()?.parse::<u16>().ok()?;
            let aliases: Vec<&str> = fields.collect();
            (service == name || aliases.contains(&name)).then_some(port)
        })
    };
    match word.split_once(':') {
        Some((first, last)) => {
            let first = first.parse::<u16>().ok().or_else(|| lookup(first))?;
            let last = last.parse::<u16>().ok().or_else(|| lookup(last))?;
            let range = format!("{first}:{last}");
            parse_port_range(&range).ok().map(|_| range)
        }
        None => lookup(word).filter(|p| *p > 0).map(|p| p.to_string()),
    }
}

/// A value on one line for the report.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `path` relative to the imported folder when inside it.
fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.display().to_string())
}
