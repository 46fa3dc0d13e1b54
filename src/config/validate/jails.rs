//! Jails: names, filters, sources and the settings resolved against `defaults:`.

use std::collections::BTreeSet;

use serde_yaml::Value;

use super::settings::Overrides;
use super::{Anchor, Place, Validator, check_name, describe, key_text, suggest};
use crate::config::PodSelector;
use crate::config::action::{FirewallAction, RejectWith};
use crate::config::error::Scope;
use crate::config::glob::Glob;
use crate::config::jail::{
    Chain, ContainerSelector, DefaultsConfig, JailConfig, JournalMatch, JournalSelector,
    LabelMatch, SourceConfig,
};
use crate::config::ports::{Ports, Protocol};
use crate::config::positions::{COMPLEX_KEY, YamlPath};
use crate::config::raw::{
    RawContainer, RawFilterRef, RawJail, RawJournal, RawPodSelector, RawSource,
};
use crate::config::sections::MAX_CHAIN_NAME;
use crate::filter::fail2ban;

use super::filters::{compile_filter, one_line};

/// What jails are checked against.
pub(super) struct JailContext<'a> {
    /// `defaults:` as written, for where a value came from and for key-by-key merging.
    pub(super) defaults: &'a Overrides,
    /// `defaults:` completed with the built-in defaults.
    pub(super) resolved: &'a DefaultsConfig,
    /// Built-in and user filter names.
    pub(super) filters: &'a BTreeSet<String>,
    /// `firewall.chain_prefix`, which limits the length of jail names.
    pub(super) chain_prefix: &'a str,
}

impl Validator<'_> {
    pub(super) fn jails(
        &mut self,
        value: Option<&Value>,
        path: &YamlPath,
        context: &JailContext<'_>,
    ) -> Vec<JailConfig> {
        let mapping = match value {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Mapping(mapping)) => mapping,
            Some(other) => {
                self.report(
                    &Place::file(),
                    path,
                    Anchor::Value,
                    format!(
                        "must be a mapping of jail names to jails, not {}",
                        describe(other)
                    ),
                );
                return Vec::new();
            }
        };
        let mut jails = Vec::new();
        for (key, value) in mapping {
            let Some(name) = key_text(key) else {
                self.report(
                    &Place::file(),
                    &path.key(COMPLEX_KEY),
                    Anchor::Key,
                    "jail names must be plain words",
                );
                continue;
            };
            if let Some(jail) = self.jail(&name, value, &path.key(&name), context) {
                jails.push(jail);
            }
        }
        jails
    }

    pub(super) fn jail(
        &mut self,
        name: &str,
        value: &Value,
        path: &YamlPath,
        context: &JailContext<'_>,
    ) -> Option<JailConfig> {
        let place = Place {
            scope: Scope::Jail(name.to_string()),
            depth: 2,
        };
        let name_ok = match check_name(name, "jail") {
            Err(message) => {
                self.report(&place, path, Anchor::Key, message);
                false
            }
            Ok(()) if context.chain_prefix.len() + 1 + name.len() > MAX_CHAIN_NAME => {
                self.report(
                    &place,
                    path,
                    Anchor::Key,
                    format!(
                        "name too long: its firewall chain `{}-{name}` would exceed {MAX_CHAIN_NAME} \
                         characters (shorten the name or firewall.chain_prefix)",
                        context.chain_prefix
                    ),
                );
                false
            }
            Ok(()) => true,
        };
        let mut raw = self.mapping_of::<RawJail>(value, path, &place)?;
        let own = self.overrides(raw.take_shared(), path, &place);

        let manual = raw.manual.unwrap_or(false);
        let sources = match &raw.sources {
            Some(value) => self.sources(value, &path.key("sources"), &place),
            None => Some(Vec::new()),
        };
        let filter = if manual {
            if raw.filter.is_some() {
                self.report(
                    &place,
                    &path.key("filter"),
                    Anchor::Key,
                    "a manual jail has no filter (remove `filter`, or `manual: true`)",
                );
            }
            if sources.as_ref().is_some_and(|s| !s.is_empty()) {
                self.report(
                    &place,
                    &path.key("sources"),
                    Anchor::Key,
                    "a manual jail reads no logs (remove `sources`, or `manual: true`)",
                );
            }
            None
        } else if raw.manual.is_none() && value.get("manual").is_some_and(|v| !v.is_null()) {
            // `manual` was rejected (already reported): whether a filter is needed is unknown.
            None
        } else if raw.filter.is_none() && value.get("filter").is_some() {
            // Given but rejected as the wrong type (already reported), or left empty.
            if value.get("filter").is_some_and(Value::is_null) {
                self.report(
                    &place,
                    &path.key("filter"),
                    Anchor::Key,
                    "must name a filter (or set `manual: true` for a jail without one)",
                );
            }
            None
        } else {
            match &raw.filter {
                Some(RawFilterRef::Fail2Ban(mapping)) => {
                    self.fail2ban_filter(mapping, &path.key("filter"), &place)
                }
                Some(RawFilterRef::Name(filter)) => {
                    self.jail_filter(name, Some(filter), path, &place, context.filters)
                }
                None => self.jail_filter(name, None, path, &place, context.filters),
            }
        };

        let protocol = raw.protocol.unwrap_or(Protocol::All);
        let ports = match &raw.ports {
            Some(value) => self.ports(value, &path.key("ports"), &place),
            None => Some(Ports::All),
        };
        let action = own.action.as_ref().or(context.defaults.action.as_ref());
        if let Some((action, action_path)) = action
            && action.firewall == FirewallAction::Reject(RejectWith::TcpReset)
            && protocol != Protocol::Tcp
        {
            self.report(
                &place,
                action_path,
                Anchor::Value,
                "`tcp-reset` answers only TCP: this jail needs `protocol: tcp`",
            );
        }
        let chains = match &raw.chains {
            Some(chains) if chains.is_empty() => {
                self.report(
                    &place,
                    &path.key("chains"),
                    Anchor::Value,
                    "give at least one chain (input, docker-user, prerouting)",
                );
                None
            }
            Some(chains) => {
                let mut unique: Vec<Chain> = Vec::new();
                for chain in chains {
                    if !unique.contains(chain) {
                        unique.push(*chain);
                    }
                }
                // Asked for in so many words, so refused before start. A `docker-user` the
                // target puts in raw PREROUTING is only known at start, and drops instead
                // (with a warning from the firewall).
                if unique.contains(&Chain::Prerouting)
                    && action.is_some_and(|(action, _)| {
                        matches!(action.firewall, FirewallAction::Reject(_))
                    })
                {
                    self.report(
                        &place,
                        &path.key("chains"),
                        Anchor::Value,
                        "`prerouting` bans sit in the raw table, where iptables cannot REJECT \
                         (only filter INPUT, FORWARD and OUTPUT can): give this jail \
                         `action: drop`, or ban with `reject` in `input` or `docker-user`",
                    );
                }
                Some(unique)
            }
            None => Some(vec![Chain::Input, Chain::DockerUser]),
        };

        let defaults = context.resolved;
        let jail = JailConfig {
            name: name.to_string(),
            enabled: raw.enabled.unwrap_or(true),
            filter: filter.clone(),
            sources: sources?,
            maxretry: own.maxretry.unwrap_or(defaults.maxretry),
            findtime: own.findtime.unwrap_or(defaults.findtime),
            bantime: own.bantime.unwrap_or(defaults.bantime),
            ignoreip: own.ignoreip.unwrap_or_else(|| defaults.ignoreip.clone()),
            ignoreself: own.ignoreself.unwrap_or(defaults.ignoreself),
            ports: ports?,
            protocol,
            action: action.map_or_else(|| defaults.action.clone(), |(a, _)| a.clone()),
            increment: own.increment.or(&context.defaults.increment).resolve(),
            chains: chains?,
            share: raw.share,
            share_failures: raw.share_failures.unwrap_or(false),
        };
        (name_ok && (manual || filter.is_some())).then_some(jail)
    }

    /// `filter: {fail2ban: PATH, OPTION: VALUE…}`: reads and compiles the Fail2Ban filter file,
    /// keeps it under the name the jail then refers to (`fail2ban:PATH[mode=aggressive]`), and
    /// keeps what `logjail check` says of it. Errors inside the file name its path and line.
    fn fail2ban_filter(
        &mut self,
        mapping: &serde_yaml::Mapping,
        path: &YamlPath,
        place: &Place,
    ) -> Option<String> {
        let mut file = None;
        let mut options = Vec::new();
        let mut ok = true;
        for (key, value) in mapping {
            let Some(key) = key_text(key) else {
                self.report(
                    place,
                    &path.key(COMPLEX_KEY),
                    Anchor::Key,
                    "keys must be plain words",
                );
                ok = false;
                continue;
            };
            let text = match value {
                Value::String(text) => Some(text.clone()),
                Value::Number(number) => Some(number.to_string()),
                Value::Bool(flag) => Some(flag.to_string()),
                _ => None,
            };
            let Some(text) = text else {
                self.report(
                    place,
                    &path.key(&key),
                    Anchor::Value,
                    format!(
                        "a Fail2Ban filter option is one value (text or number), not {}",
                        describe(value)
                    ),
                );
                ok = false;
                continue;
            };
            if key == "fail2ban" {
                file = Some(text);
            } else {
                options.push((key, text));
            }
        }
        let Some(file) = file else {
            self.report(
                place,
                path,
                Anchor::Key,
                "a filter given as a mapping needs `fail2ban: PATH` (a Fail2Ban filter file, \
                 such as /etc/fail2ban/filter.d/sshd.conf); its other keys are that filter's \
                 options (`mode: aggressive`)",
            );
            return None;
        };
        if !ok {
            return None;
        }
        let file_path = path.key("fail2ban");
        let given = std::path::Path::new(&file);
        let resolved = match &self.base_dir {
            Some(base) if given.is_relative() => base.join(given),
            _ => given.to_path_buf(),
        };
        let read = match fail2ban::read(&resolved, &options) {
            Ok(read) => read,
            Err(error) => {
                self.report(
                    place,
                    &file_path,
                    Anchor::Value,
                    format!("Fail2Ban filter file: {error}"),
                );
                return None;
            }
        };
        let mut name = format!("fail2ban:{file}");
        if !options.is_empty() {
            let listed: Vec<String> = options.iter().map(|(k, v)| format!("{k}={v}")).collect();
            name.push_str(&format!("[{}]", listed.join(", ")));
        }
        match compile_filter(&name, &read.spec) {
            Ok(filter) => {
                let mut notes = read.notes.clone();
                for (field, note) in filter.fallbacks() {
                    match read.locate(*field) {
                        Some(at) => notes.push(format!("{at}: {field}: {note}")),
                        None => notes.push(format!("{field}: {note}")),
                    }
                }
                self.filter_notes.insert(name.clone(), notes);
                self.fail2ban_filters.insert(name.clone(), filter);
                Some(name)
            }
            Err(errors) => {
                for error in errors {
                    let message = one_line(&error.message);
                    let message = match error.field {
                        Some(field) => match read.locate(field) {
                            Some(at) => format!("{at}: {field}: {message}"),
                            None => format!("{file}: {field}: {message}"),
                        },
                        None => format!("{file}: {message}"),
                    };
                    self.report(place, &file_path, Anchor::Value, message);
                }
                None
            }
        }
    }

    /// The filter a (non-manual) jail uses: `filter:`, or by default the jail's own name.
    pub(super) fn jail_filter(
        &mut self,
        jail: &str,
        filter: Option<&str>,
        path: &YamlPath,
        place: &Place,
        known: &BTreeSet<String>,
    ) -> Option<String> {
        let wanted = filter.unwrap_or(jail);
        if known.contains(wanted) {
            return Some(wanted.to_string());
        }
        let hint = match suggest(wanted, known.iter().map(String::as_str)) {
            Some(near) => format!("did you mean `{near}`? "),
            None => String::new(),
        };
        match filter {
            Some(_) => self.report(
                place,
                &path.key("filter"),
                Anchor::Value,
                format!(
                    "unknown filter \"{wanted}\" ({hint}see `logjail filters`; your own go under \
                     `filters:`)"
                ),
            ),
            None => self.report(
                place,
                path,
                Anchor::Key,
                format!(
                    "no filter named \"{jail}\" ({hint}see `logjail filters`): set `filter: NAME`, \
                     or `manual: true` for a jail that only bans from the command line"
                ),
            ),
        }
        None
    }

    pub(super) fn sources(
        &mut self,
        value: &Value,
        path: &YamlPath,
        place: &Place,
    ) -> Option<Vec<SourceConfig>> {
        let items = match value {
            Value::Null => return Some(Vec::new()),
            Value::Sequence(items) => items,
            other => {
                self.report(
                    place,
                    path,
                    Anchor::Value,
                    format!(
                        "must be a list of sources (`- file: PATH`, `- journal: {{…}}`, \
                         `- container: {{…}}`, `- pods: {{…}}`), not {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        let mut sources = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.source(item, &path.index(i), place) {
                Some(source) => sources.push(source),
                None => ok = false,
            }
        }
        ok.then_some(sources)
    }

    pub(super) fn source(
        &mut self,
        value: &Value,
        path: &YamlPath,
        place: &Place,
    ) -> Option<SourceConfig> {
        let raw = self.mapping_of::<RawSource>(value, path, place)?;
        // Presence, not value: `- journal:` with nothing after it is the whole journal.
        let given: Vec<&str> = ["file", "journal", "container", "pods"]
            .into_iter()
            .filter(|kind| value.get(kind).is_some())
            .collect();
        match given.as_slice() {
            [] => {
                self.report(
                    place,
                    path,
                    Anchor::Value,
                    "a source needs one of `file`, `journal`, `container` or `pods`",
                );
                return None;
            }
            [_] => {}
            [_, second, ..] => {
                self.report(
                    place,
                    &path.key(second),
                    Anchor::Key,
                    "one kind of source per list item: start another item with `-`",
                );
                return None;
            }
        }
        if raw.optional.is_some() && given != ["file"] {
            self.report(
                place,
                &path.key("optional"),
                Anchor::Key,
                "only a `file` source can be optional",
            );
            return None;
        }
        match given[0] {
            "file" => {
                let file_path = path.key("file");
                let Some(text) = raw.file else {
                    // A value of the wrong type is already reported; only an empty one is not.
                    if value.get("file").is_some_and(Value::is_null) {
                        self.report(place, &file_path, Anchor::Key, "needs a path");
                    }
                    return None;
                };
                if !text.starts_with('/') {
                    self.report(
                        place,
                        &file_path,
                        Anchor::Value,
                        format!("must be an absolute path (got \"{text}\")"),
                    );
                    return None;
                }
                match Glob::for_path(&text) {
                    Ok(glob) => Some(SourceConfig::File {
                        path: glob,
                        optional: raw.optional.unwrap_or(false),
                    }),
                    Err(message) => {
                        self.report(place, &file_path, Anchor::Value, message);
                        None
                    }
                }
            }
            "journal" => self
                .journal(
                    raw.journal.as_ref().unwrap_or(&Value::Null),
                    &path.key("journal"),
                    place,
                )
                .map(SourceConfig::Journal),
            "pods" => self
                .pod_selector(
                    raw.pods.as_ref().unwrap_or(&Value::Null),
                    &path.key("pods"),
                    place,
                )
                .map(SourceConfig::Pods),
            _ => self
                .container(
                    raw.container.as_ref().unwrap_or(&Value::Null),
                    &path.key("container"),
                    place,
                )
                .map(SourceConfig::Container),
        }
    }

    /// `journal: {unit: U, match: [F=V, …]}`, `journal: {}`, or the match list alone:
    /// `journal: [SYSLOG_IDENTIFIER=sshd]`.
    pub(super) fn journal(
        &mut self,
        value: &Value,
        path: &YamlPath,
        place: &Place,
    ) -> Option<JournalSelector> {
        if let Value::Sequence(items) = value {
            let matches = self.journal_matches(items, path, place)?;
            return Some(JournalSelector {
                unit: None,
                matches,
                directory: None,
            });
        }
        let raw = self.mapping_of::<RawJournal>(value, path, place)?;
        let mut ok = true;
        if raw
            .unit
            .as_deref()
            .is_some_and(|unit| unit.trim().is_empty())
        {
            self.report(place, &path.key("unit"), Anchor::Value, "must not be empty");
            ok = false;
        }
        let directory = match raw.directory.as_deref() {
            Some(text) if !text.starts_with('/') => {
                self.report(
                    place,
                    &path.key("directory"),
                    Anchor::Value,
                    format!("must be an absolute path (got \"{text}\")"),
                );
                ok = false;
                None
            }
            Some(text) => Some(std::path::PathBuf::from(text)),
            None => None,
        };
        let match_values: Vec<Value> = raw
            .matches
            .unwrap_or_default()
            .into_iter()
            .map(Value::String)
            .collect();
        let matches = self.journal_matches(&match_values, &path.key("match"), place);
        match (ok, matches) {
            (true, Some(matches)) => Some(JournalSelector {
                unit: raw.unit.map(|unit| unit.trim().to_string()),
                matches,
                directory,
            }),
            _ => None,
        }
    }

    fn journal_matches(
        &mut self,
        items: &[Value],
        path: &YamlPath,
        place: &Place,
    ) -> Option<Vec<JournalMatch>> {
        let mut matches = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let parsed = match item {
                Value::String(text) => parse_journal_match(text),
                other => Err(format!(
                    "must be FIELD=VALUE (e.g. SYSLOG_IDENTIFIER=sshd), not {}",
                    describe(other)
                )),
            };
            match parsed {
                Ok(m) => matches.push(m),
                Err(message) => {
                    self.report(place, &path.index(i), Anchor::Value, message);
                    ok = false;
                }
            }
        }
        ok.then_some(matches)
    }

    pub(super) fn container(
        &mut self,
        value: &Value,
        path: &YamlPath,
        place: &Place,
    ) -> Option<ContainerSelector> {
        if !value.is_mapping() {
            self.report(
                place,
                path,
                Anchor::Value,
                format!(
                    "must be a mapping with `name`, `image` and/or `label`, not {}",
                    describe(value)
                ),
            );
            return None;
        }
        let raw = self.mapping_of::<RawContainer>(value, path, place)?;
        if raw.name.is_none() && raw.image.is_none() && raw.label.is_none() {
            self.report(
                place,
                path,
                Anchor::Value,
                "give at least one of `name`, `image` or `label` (labelled containers join a jail \
                 by themselves, without a source)",
            );
            return None;
        }
        let mut ok = true;
        let name = self.optional_glob(raw.name, path, "name", place, &mut ok);
        let image = self.optional_glob(raw.image, path, "image", place, &mut ok);
        let label = match raw.label.map(|text| LabelMatch::parse(&text)) {
            None => None,
            Some(Ok(label)) => Some(label),
            Some(Err(message)) => {
                self.report(place, &path.key("label"), Anchor::Value, message);
                ok = false;
                None
            }
        };
        ok.then_some(ContainerSelector { name, image, label })
    }
}

impl Validator<'_> {
    /// The glob under `path.key`, when given; a bad one is reported there and clears `ok`.
    fn optional_glob(
        &mut self,
        text: Option<String>,
        path: &YamlPath,
        key: &str,
        place: &Place,
        ok: &mut bool,
    ) -> Option<Glob> {
        match Glob::new(&text?) {
            Ok(glob) => Some(glob),
            Err(message) => {
                self.report(place, &path.key(key), Anchor::Value, message);
                *ok = false;
                None
            }
        }
    }

    /// `pods: {namespace: GLOB, pod: GLOB, container: GLOB}`, at least one of them.
    pub(super) fn pod_selector(
        &mut self,
        value: &Value,
        path: &YamlPath,
        place: &Place,
    ) -> Option<PodSelector> {
        if !value.is_mapping() {
            self.report(
                place,
                path,
                Anchor::Value,
                format!(
                    "must be a mapping with `namespace`, `pod` and/or `container`, not {}",
                    describe(value)
                ),
            );
            return None;
        }
        let raw = self.mapping_of::<RawPodSelector>(value, path, place)?;
        let mut ok = true;
        let selector = PodSelector {
            namespace: self.optional_glob(raw.namespace, path, "namespace", place, &mut ok),
            pod: self.optional_glob(raw.pod, path, "pod", place, &mut ok),
            container: self.optional_glob(raw.container, path, "container", place, &mut ok),
        };
        if ok && selector.is_empty() {
            self.report(
                place,
                path,
                Anchor::Value,
                "give at least one of `namespace`, `pod` or `container` (pods with \
                 `logjail.io/` annotations join a jail by themselves, without a source)",
            );
            return None;
        }
        ok.then_some(selector)
    }
}

fn parse_journal_match(text: &str) -> Result<JournalMatch, String> {
    let (field, value) = text
        .split_once('=')
        .ok_or_else(|| format!("\"{text}\" is not FIELD=VALUE (e.g. SYSLOG_IDENTIFIER=sshd)"))?;
    let valid_field = field.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && field
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !valid_field {
        return Err(format!(
            "\"{field}\" is not a journal field name (upper-case letters, digits and `_`)"
        ));
    }
    Ok(JournalMatch {
        field: field.to_string(),
        value: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_matches() {
        let m = parse_journal_match("SYSLOG_IDENTIFIER=sshd").unwrap();
        assert_eq!(
            (m.field.as_str(), m.value.as_str()),
            ("SYSLOG_IDENTIFIER", "sshd")
        );
        assert!(parse_journal_match("_SYSTEMD_UNIT=ssh.service").is_ok());
        assert!(parse_journal_match("unit=ssh").is_err());
        assert!(parse_journal_match("SYSLOG_IDENTIFIER").is_err());
    }
}
