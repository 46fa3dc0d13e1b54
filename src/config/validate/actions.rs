//! `action:`: the one firewall verdict and the notifications (webhooks, commands) beside it.

use std::sync::Arc;

use reqwest::header::{HeaderName, HeaderValue};
use serde_yaml::Value;

use super::{Anchor, Place, Validator, describe, key_text, suggest};
use crate::config::action::{
    ACTION_NAMES, ActionConfig, ArgTemplate, CommandConfig, DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_WEBHOOK_RETRIES, DEFAULT_WEBHOOK_TIMEOUT, FirewallAction, MAX_WEBHOOK_RETRIES,
    NotifyConfig, NotifyEvent, NotifyOn, Placeholder, TemplateError, WebhookConfig, WebhookFormat,
    is_action_name, parse_action_entry, parse_action_word, unknown_action,
};
use crate::config::positions::YamlPath;
use crate::config::raw::{RawCommand, RawWebhook, Scalar};

/// One item of an `action:` list.
enum ActionItem {
    Firewall(FirewallAction),
    Notify(NotifyConfig),
}

/// Programs whose `-c` argument is code: a placeholder there would let log text run.
const SHELLS: [&str; 8] = ["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox"];

/// Headers the HTTP client writes itself; setting them by hand would corrupt the request.
const MANAGED_HEADERS: [&str; 5] = [
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "upgrade",
];

impl Validator<'_> {
    pub(super) fn action(
        &mut self,
        value: &Value,
        path: &YamlPath,
        place: &Place,
    ) -> Option<ActionConfig> {
        let items: Vec<(YamlPath, &Value)> = match value {
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| (path.index(i), item))
                .collect(),
            single => vec![(path.clone(), single)],
        };
        let mut firewall: Option<FirewallAction> = None;
        let mut notify = Vec::new();
        let mut ok = true;
        for (item_path, item) in &items {
            match self.action_item(item, item_path, place) {
                Some(ActionItem::Firewall(action)) => match firewall {
                    Some(first) => {
                        self.report(
                            place,
                            item_path,
                            Anchor::Value,
                            format!(
                                "only one of drop, reject and log per jail (`{first}` is already \
                                 given)"
                            ),
                        );
                        ok = false;
                    }
                    None => firewall = Some(action),
                },
                Some(ActionItem::Notify(config)) => notify.push(config),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        match firewall {
            Some(firewall) => Some(ActionConfig {
                firewall,
                notify: Arc::from(notify),
            }),
            None => {
                let hint = if notify.is_empty() {
                    ""
                } else {
                    " next to the notifications, e.g. `[drop, {webhook: …}]` (`log` for a dry run)"
                };
                self.report(
                    place,
                    path,
                    Anchor::Value,
                    format!("needs one of drop, reject, reject-with TYPE or log{hint}"),
                );
                None
            }
        }
    }

    /// One action: a word (`drop`, `reject-with tcp-reset`) or a one-key mapping
    /// (`{reject-with: tcp-reset}`, `{webhook: {...}}`, `{command: {...}}`).
    fn action_item(&mut self, item: &Value, path: &YamlPath, place: &Place) -> Option<ActionItem> {
        let parsed = match item {
            Value::String(word) => {
                let name = word.split_whitespace().next().unwrap_or_default();
                if is_action_name(name) {
                    parse_action_word(word)
                } else {
                    Err(unknown_action_with_hint(name))
                }
            }
            Value::Mapping(entry) => {
                let mut entries = entry.iter();
                let (Some((key, argument)), None) = (entries.next(), entries.next()) else {
                    self.report(
                        place,
                        path,
                        Anchor::Value,
                        "an action mapping has exactly one key, e.g. `{reject-with: tcp-reset}`; \
                         list several actions with `-`",
                    );
                    return None;
                };
                let Some(name) = key_text(key) else {
                    self.report(place, path, Anchor::Value, "an action name must be a word");
                    return None;
                };
                match (name.as_str(), argument) {
                    ("webhook", settings) => {
                        return self
                            .webhook(settings, &path.key("webhook"), place)
                            .map(|w| ActionItem::Notify(NotifyConfig::Webhook(w)));
                    }
                    ("command", settings) => {
                        return self
                            .command(settings, &path.key("command"), place)
                            .map(|c| ActionItem::Notify(NotifyConfig::Command(c)));
                    }
                    // Unknown names are reported as such, whatever their argument.
                    _ if !is_action_name(&name) => Err(unknown_action_with_hint(&name)),
                    (_, Value::Null) => parse_action_entry(&name, None),
                    (_, Value::String(argument)) => parse_action_entry(&name, Some(argument)),
                    (_, other) => Err(format!(
                        "the argument of `{name}` must be a word, not {}",
                        describe(other)
                    )),
                }
            }
            other => Err(format!(
                "must be drop, reject, reject-with TYPE, log or a notification mapping, not {}",
                describe(other)
            )),
        };
        match parsed {
            Ok(action) => Some(ActionItem::Firewall(action)),
            Err(message) => {
                self.report(place, path, Anchor::Value, message);
                None
            }
        }
    }

    fn webhook(&mut self, value: &Value, path: &YamlPath, place: &Place) -> Option<WebhookConfig> {
        if !value.is_mapping() {
            self.report(
                place,
                path,
                Anchor::Value,
                format!(
                    "must be a mapping of settings, e.g. `{{url: \"https://…\", format: slack}}`, \
                     not {}",
                    describe(value)
                ),
            );
            return None;
        }
        let raw = self.mapping_of::<RawWebhook>(value, path, place)?;
        let url = match &raw.url {
            Some(url) => self.webhook_url(url, &path.key("url"), place),
            None => {
                self.report(place, path, Anchor::Key, "needs `url:`");
                None
            }
        };
        let format = match &raw.format {
            None => Some(WebhookFormat::Generic),
            Some(text) => WebhookFormat::parse(text).or_else(|| {
                let names = WebhookFormat::ALL.map(WebhookFormat::name);
                let message = match suggest(text.trim(), names.into_iter()) {
                    Some(near) => format!("unknown format `{text}` (did you mean `{near}`?)"),
                    None => format!("unknown format `{text}` (expected {})", names.join(", ")),
                };
                self.report(place, &path.key("format"), Anchor::Value, message);
                None
            }),
        };
        let timeout = match &raw.timeout {
            Some(scalar) => self.positive_duration(scalar, &path.key("timeout"), place),
            None => Some(DEFAULT_WEBHOOK_TIMEOUT),
        };
        let retries = match &raw.retries {
            Some(scalar) => self.retries(scalar, &path.key("retries"), place),
            None => Some(DEFAULT_WEBHOOK_RETRIES),
        };
        let on = self.notify_on(raw.on.as_ref(), &path.key("on"), place);
        let headers = match &raw.headers {
            Some(value) => self.headers(value, &path.key("headers"), place),
            None => Some(Vec::new()),
        };
        Some(WebhookConfig {
            url: url?,
            format: format?,
            timeout: timeout?,
            retries: retries?,
            on: on?,
            headers: headers?,
        })
    }

    fn webhook_url(&mut self, text: &str, path: &YamlPath, place: &Place) -> Option<String> {
        let text = text.trim();
        let message = match reqwest::Url::parse(text) {
            Err(error) => format!("\"{text}\" is not a URL ({error})"),
            Ok(url) if !matches!(url.scheme(), "http" | "https") => format!(
                "`{}:` URLs are not supported: use an http:// or https:// URL",
                url.scheme()
            ),
            Ok(url) if url.host_str().is_none_or(str::is_empty) => {
                "the URL needs a host".to_string()
            }
            Ok(_) => return Some(text.to_string()),
        };
        self.report(place, path, Anchor::Value, message);
        None
    }

    fn retries(&mut self, scalar: &Scalar, path: &YamlPath, place: &Place) -> Option<u32> {
        let number = match scalar {
            Scalar::Int(n) => Some(*n),
            Scalar::Text(text) => text.trim().parse::<i64>().ok(),
            Scalar::Float(_) | Scalar::Bool(_) => None,
        };
        match number.and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n <= MAX_WEBHOOK_RETRIES => Some(n),
            _ => {
                self.report(
                    place,
                    path,
                    Anchor::Value,
                    format!(
                        "must be a whole number from 0 to {MAX_WEBHOOK_RETRIES} (got {scalar})"
                    ),
                );
                None
            }
        }
    }

    /// `on:`: `ban`, `unban`, or a list of them; both when not given.
    fn notify_on(
        &mut self,
        value: Option<&Value>,
        path: &YamlPath,
        place: &Place,
    ) -> Option<NotifyOn> {
        let items: Vec<(YamlPath, &Value)> = match value {
            None => return Some(NotifyOn::default()),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| (path.index(i), item))
                .collect(),
            Some(single) => vec![(path.clone(), single)],
        };
        if items.is_empty() {
            self.report(
                place,
                path,
                Anchor::Value,
                "give ban, unban or both (or leave `on:` out for both)",
            );
            return None;
        }
        let mut on = NotifyOn {
            ban: false,
            unban: false,
        };
        let mut ok = true;
        for (item_path, item) in items {
            let event = match item {
                Value::String(text) => NotifyEvent::parse(text)
                    .ok_or_else(|| format!("unknown event `{text}` (expected ban or unban)")),
                other => Err(format!("must be ban or unban, not {}", describe(other))),
            };
            match event {
                Ok(NotifyEvent::Ban) => on.ban = true,
                Ok(NotifyEvent::Unban) => on.unban = true,
                Err(message) => {
                    self.report(place, &item_path, Anchor::Value, message);
                    ok = false;
                }
            }
        }
        ok.then_some(on)
    }

    fn headers(
        &mut self,
        value: &Value,
        path: &YamlPath,
        place: &Place,
    ) -> Option<Vec<(String, String)>> {
        let mapping = match value {
            Value::Null => return Some(Vec::new()),
            Value::Mapping(mapping) => mapping,
            other => {
                self.report(
                    place,
                    path,
                    Anchor::Value,
                    format!(
                        "must be a mapping of header names to values, not {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        let mut headers = Vec::new();
        let mut ok = true;
        for (key, item) in mapping {
            let Some(name) = key_text(key) else {
                self.report(
                    place,
                    path,
                    Anchor::Value,
                    "header names must be plain words",
                );
                ok = false;
                continue;
            };
            let header_path = path.key(&name);
            let value = match item {
                Value::String(text) => text.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    self.report(
                        place,
                        &header_path,
                        Anchor::Value,
                        format!("a header value must be text, not {}", describe(other)),
                    );
                    ok = false;
                    continue;
                }
            };
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.report(
                    place,
                    &header_path,
                    Anchor::Key,
                    format!("`{name}` is not a valid header name"),
                );
                ok = false;
            } else if MANAGED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                self.report(
                    place,
                    &header_path,
                    Anchor::Key,
                    format!("`{name}` is set by logjail itself"),
                );
                ok = false;
            } else if HeaderValue::from_str(&value).is_err() {
                self.report(
                    place,
                    &header_path,
                    Anchor::Value,
                    "a header value must be printable text without line breaks",
                );
                ok = false;
            } else {
                headers.push((name, value));
            }
        }
        ok.then_some(headers)
    }

    fn command(&mut self, value: &Value, path: &YamlPath, place: &Place) -> Option<CommandConfig> {
        // `{command: [program, args…]}` is short for `{command: {argv: [program, args…]}}`.
        if value.is_sequence() {
            let argv = self.argv(value, path, place)?;
            return Some(CommandConfig {
                argv,
                on: NotifyOn::default(),
                timeout: DEFAULT_COMMAND_TIMEOUT,
            });
        }
        if !value.is_mapping() {
            self.report(
                place,
                path,
                Anchor::Value,
                format!(
                    "must be a mapping of settings, e.g. `{{argv: [/usr/local/bin/notify, \
                     \"<ip>\"]}}`, not {}",
                    describe(value)
                ),
            );
            return None;
        }
        let raw = self.mapping_of::<RawCommand>(value, path, place)?;
        let argv = match &raw.argv {
            Some(value) => self.argv(value, &path.key("argv"), place),
            None => {
                self.report(place, path, Anchor::Key, "needs `argv:`");
                None
            }
        };
        let timeout = match &raw.timeout {
            Some(scalar) => self.positive_duration(scalar, &path.key("timeout"), place),
            None => Some(DEFAULT_COMMAND_TIMEOUT),
        };
        let on = self.notify_on(raw.on.as_ref(), &path.key("on"), place);
        Some(CommandConfig {
            argv: argv?,
            on: on?,
            timeout: timeout?,
        })
    }

    /// The program and its arguments: a list, never a string to split (nothing here is ever
    /// given to a shell).
    fn argv(&mut self, value: &Value, path: &YamlPath, place: &Place) -> Option<Vec<ArgTemplate>> {
        let Value::Sequence(items) = value else {
            self.report(
                place,
                path,
                Anchor::Value,
                format!(
                    "must be a list: the program, then one item per argument, e.g. \
                     [/usr/local/bin/notify, \"<jail>\", \"<ip>\"] (it is never split or given \
                     to a shell), not {}",
                    describe(value)
                ),
            );
            return None;
        };
        if items.is_empty() {
            self.report(
                place,
                path,
                Anchor::Value,
                "needs at least the program to run",
            );
            return None;
        }
        let mut argv = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let item_path = path.index(i);
            let text = match item {
                Value::String(text) => text.clone(),
                Value::Number(n) => n.to_string(),
                other => {
                    self.report(
                        place,
                        &item_path,
                        Anchor::Value,
                        format!("an argument must be text, not {}", describe(other)),
                    );
                    ok = false;
                    continue;
                }
            };
            match ArgTemplate::parse(&text) {
                Ok(template) => {
                    if i == 0 && !self.program(&text, &template, &item_path, place) {
                        ok = false;
                    }
                    argv.push(template);
                }
                Err(TemplateError::UnknownPlaceholder { name }) => {
                    let names = Placeholder::ALL.map(Placeholder::name);
                    let message = match suggest(&name, names.into_iter()) {
                        Some(near) => {
                            format!("unknown placeholder `<{name}>` (did you mean `<{near}>`?)")
                        }
                        None => format!(
                            "unknown placeholder `<{name}>` (expected one of: {})",
                            names.map(|n| format!("<{n}>")).join(", ")
                        ),
                    };
                    self.report(place, &item_path, Anchor::Value, message);
                    ok = false;
                }
            }
        }
        if ok && let Some(index) = shell_script_with_placeholders(&argv) {
            self.report(
                place,
                &path.index(index),
                Anchor::Value,
                "placeholders inside a shell script would let log text run as code; pass them \
                 as arguments of their own instead, e.g. [/bin/sh, -c, 'notify \"$1\"', sh, \
                 \"<ip>\"]",
            );
            ok = false;
        }
        ok.then_some(argv)
    }

    /// Checks `argv[0]`: the program must be fixed text, and absolute or a bare name to look
    /// up on `PATH` (the daemon's working directory means nothing to the user).
    fn program(
        &mut self,
        text: &str,
        template: &ArgTemplate,
        path: &YamlPath,
        place: &Place,
    ) -> bool {
        let message = if template.has_placeholders() {
            "the program must be fixed: placeholders may only appear in its arguments"
        } else if text.is_empty() {
            "the program must not be empty"
        } else if text.contains('/') && !text.starts_with('/') {
            "the program must be an absolute path or a name looked up on PATH"
        } else if !text.contains('/') && text.contains(char::is_whitespace) {
            "the program name has a space: give each argument as its own list item"
        } else {
            return true;
        };
        self.report(place, path, Anchor::Value, message);
        false
    }
}

fn unknown_action_with_hint(name: &str) -> String {
    match suggest(name, ACTION_NAMES.into_iter()) {
        Some(near) => format!("unknown action `{name}` (did you mean `{near}`?)"),
        None => unknown_action(name),
    }
}

/// The index of a shell's `-c` script that holds a placeholder, if any: `[sh, -c, "… <ip>"]`,
/// also behind `env` or with options clustered (`-ec`).
fn shell_script_with_placeholders(argv: &[ArgTemplate]) -> Option<usize> {
    let texts: Vec<String> = argv.iter().map(ToString::to_string).collect();
    let shell = texts.iter().position(|text| {
        let base = text.rsplit('/').next().unwrap_or_default();
        SHELLS.contains(&base)
    })?;
    let flag = texts[shell + 1..]
        .iter()
        .position(|text| text.starts_with('-') && !text.starts_with("--") && text.contains('c'))?;
    let script = shell + 1 + flag + 1;
    argv.get(script)
        .is_some_and(ArgTemplate::has_placeholders)
        .then_some(script)
}
