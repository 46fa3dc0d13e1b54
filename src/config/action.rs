//! What happens when a jail bans or unbans: the firewall verdict (drop, reject, or only log
//! as a dry run) and the notifications sent next to it (webhooks, commands).
//!
//! In YAML, `action:` is one action or a list of actions. An action is a word (`drop`,
//! `reject`, `log`), the two words `reject-with TYPE`, or a one-key mapping such as
//! `{reject-with: tcp-reset}`, `{webhook: {...}}` or `{command: {...}}`. Exactly one of them
//! decides what the firewall does; any number of notifications may sit next to it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Everything a jail does when it bans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionConfig {
    /// What the firewall does with the banned host's packets.
    pub firewall: FirewallAction,
    /// Who is told about bans and unbans, in the order written. Shared so that every notice
    /// can carry the list it was configured with at no cost, and a reload swaps it whole.
    pub notify: Arc<[NotifyConfig]>,
}

impl Default for ActionConfig {
    fn default() -> Self {
        ActionConfig {
            firewall: FirewallAction::Drop,
            notify: Arc::from(Vec::new()),
        }
    }
}

/// What the firewall does with packets from a banned host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FirewallAction {
    /// Silently discard them.
    Drop,
    /// Refuse them with an ICMP error or a TCP reset, so clients fail fast.
    Reject(RejectWith),
    /// Touch no firewall; only log the ban (a dry run for new jails).
    Log,
}

/// How a rejected packet is answered (the `--reject-with` of iptables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RejectWith {
    #[default]
    IcmpPortUnreachable,
    IcmpHostUnreachable,
    IcmpNetUnreachable,
    /// Only meaningful for TCP: the jail must say `protocol: tcp`.
    TcpReset,
}

impl RejectWith {
    const ALL: [RejectWith; 4] = [
        RejectWith::IcmpPortUnreachable,
        RejectWith::IcmpHostUnreachable,
        RejectWith::IcmpNetUnreachable,
        RejectWith::TcpReset,
    ];

    /// The name used in the configuration and by iptables.
    pub fn name(self) -> &'static str {
        match self {
            RejectWith::IcmpPortUnreachable => "icmp-port-unreachable",
            RejectWith::IcmpHostUnreachable => "icmp-host-unreachable",
            RejectWith::IcmpNetUnreachable => "icmp-net-unreachable",
            RejectWith::TcpReset => "tcp-reset",
        }
    }

    /// Parses a reject type by its configuration name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == text)
            .ok_or_else(|| {
                format!(
                    "unknown reject type `{text}` (expected one of: {})",
                    Self::ALL.map(RejectWith::name).join(", ")
                )
            })
    }
}

impl fmt::Display for FirewallAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirewallAction::Drop => f.write_str("drop"),
            FirewallAction::Reject(with) => write!(f, "reject-with {}", with.name()),
            FirewallAction::Log => f.write_str("log"),
        }
    }
}

const EXPECTED: &str = "expected drop, reject, reject-with TYPE, log, webhook or command";

/// Every action name, firewall verdicts first; for "did you mean" suggestions.
pub const ACTION_NAMES: [&str; 6] = ["drop", "reject", "reject-with", "log", "webhook", "command"];

/// The action names that exist; anything else is reported as an unknown action.
pub fn is_action_name(name: &str) -> bool {
    ACTION_NAMES.contains(&name)
}

/// The message for an action name that does not exist.
pub fn unknown_action(name: &str) -> String {
    format!("unknown action `{name}` ({EXPECTED})")
}

/// Parses the word form of an action: `drop`, `reject`, `reject-with tcp-reset`, `log`.
pub fn parse_action_word(text: &str) -> Result<FirewallAction, String> {
    let mut words = text.split_whitespace();
    let action = match (words.next(), words.next(), words.next()) {
        (Some("drop"), None, _) => FirewallAction::Drop,
        (Some("log"), None, _) => FirewallAction::Log,
        (Some("reject"), None, _) => FirewallAction::Reject(RejectWith::default()),
        (Some("reject-with"), Some(kind), None) => FirewallAction::Reject(RejectWith::parse(kind)?),
        (Some("reject-with"), None, _) => {
            return Err("`reject-with` needs a type, e.g. `reject-with tcp-reset`".to_string());
        }
        (Some("webhook"), None, _) => {
            return Err(
                "`webhook` needs settings, e.g. `{webhook: {url: \"https://…\"}}`".to_string(),
            );
        }
        (Some("command"), None, _) => {
            return Err(
                "`command` needs settings, e.g. `{command: {argv: [/usr/local/bin/notify, \"<ip>\"]}}`"
                    .to_string(),
            );
        }
        _ => return Err(unknown_action(text.trim())),
    };
    Ok(action)
}

/// Parses the one-key mapping form of an action, given its key and its value as text.
pub fn parse_action_entry(key: &str, argument: Option<&str>) -> Result<FirewallAction, String> {
    match (key, argument) {
        ("reject-with" | "reject", Some(kind)) => {
            Ok(FirewallAction::Reject(RejectWith::parse(kind)?))
        }
        ("reject", None) => Ok(FirewallAction::Reject(RejectWith::default())),
        ("reject-with", None) => {
            Err("`reject-with` needs a type, e.g. `{reject-with: tcp-reset}`".to_string())
        }
        ("drop" | "log", _) => Err(format!(
            "`{key}` takes no argument; write it as a plain word"
        )),
        ("webhook" | "command", _) => {
            Err(format!("`{key}` is a notification, not a firewall verdict"))
        }
        _ => Err(unknown_action(key)),
    }
}

/// How long a webhook try may take when `timeout:` is not given.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries after the first when `retries:` is not given: 4 tries in all, waiting 0.5 s, 1 s
/// and 2 s in between.
pub const DEFAULT_WEBHOOK_RETRIES: u32 = 3;
/// The most `retries:` may say; more would keep a dead receiver's notices in flight for long.
pub const MAX_WEBHOOK_RETRIES: u32 = 10;
/// How long a command may run when `timeout:` is not given.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// One notification sent next to the firewall verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyConfig {
    /// An HTTP(S) POST of JSON.
    Webhook(WebhookConfig),
    /// A program run with an argument vector, never through a shell.
    Command(CommandConfig),
}

impl NotifyConfig {
    /// Which kind of notification this is, for counters and logs.
    pub fn kind(&self) -> NotifyKind {
        match self {
            NotifyConfig::Webhook(_) => NotifyKind::Webhook,
            NotifyConfig::Command(_) => NotifyKind::Command,
        }
    }

    /// Whether it runs for this event.
    pub fn runs_on(&self, event: NotifyEvent) -> bool {
        let on = match self {
            NotifyConfig::Webhook(webhook) => webhook.on,
            NotifyConfig::Command(command) => command.on,
        };
        on.includes(event)
    }
}

/// The kinds of notification; the `action` label of the failure counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotifyKind {
    Webhook,
    Command,
}

impl NotifyKind {
    /// Every kind, in a fixed order for counters and metrics.
    pub const ALL: [NotifyKind; 2] = [NotifyKind::Webhook, NotifyKind::Command];

    /// The name used in the configuration and in metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            NotifyKind::Webhook => "webhook",
            NotifyKind::Command => "command",
        }
    }
}

impl fmt::Display for NotifyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyEvent {
    Ban,
    Unban,
}

impl NotifyEvent {
    /// The name used in `on:`, in payloads and for the `<event>` placeholder.
    pub fn name(self) -> &'static str {
        match self {
            NotifyEvent::Ban => "ban",
            NotifyEvent::Unban => "unban",
        }
    }

    /// Parses `ban` or `unban`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "ban" => Some(NotifyEvent::Ban),
            "unban" => Some(NotifyEvent::Unban),
            _ => None,
        }
    }
}

impl fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The events a notification runs for (`on:`); never both false once validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyOn {
    /// Runs when a host is banned.
    pub ban: bool,
    /// Runs when a ban ends (expired, lifted by hand, or its jail removed).
    pub unban: bool,
}

impl Default for NotifyOn {
    fn default() -> Self {
        NotifyOn {
            ban: true,
            unban: true,
        }
    }
}

impl NotifyOn {
    /// Whether `event` is one of them.
    pub fn includes(self, event: NotifyEvent) -> bool {
        match event {
            NotifyEvent::Ban => self.ban,
            NotifyEvent::Unban => self.unban,
        }
    }
}

/// `{webhook: {...}}`: a JSON POST per ban and unban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where to POST; an `http://` or `https://` URL with a host. Often holds a secret (Slack
    /// and Discord put the token in the path), so logs show only [`WebhookConfig::target`].
    pub url: String,
    /// The body's shape, for the receiver at the other end.
    pub format: WebhookFormat,
    /// How long one try may take, connecting included; longer than 0.
    pub timeout: Duration,
    /// Tries after the first on connection errors, timeouts, 5xx and 429 answers.
    pub retries: u32,
    /// The events it is sent for.
    pub on: NotifyOn,
    /// Extra request headers (an `Authorization` token, say), in the order written.
    pub headers: Vec<(String, String)>,
}

impl WebhookConfig {
    /// A webhook with every optional setting at its default.
    pub fn new(url: impl Into<String>, format: WebhookFormat) -> Self {
        WebhookConfig {
            url: url.into(),
            format,
            timeout: DEFAULT_WEBHOOK_TIMEOUT,
            retries: DEFAULT_WEBHOOK_RETRIES,
            on: NotifyOn::default(),
            headers: Vec::new(),
        }
    }

    /// The URL without path, query or credentials, safe to log: `https://hooks.slack.com`.
    pub fn target(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return "(invalid URL)".to_string();
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        format!("{scheme}://{host}")
    }
}

/// The JSON a webhook sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookFormat {
    /// Every field of the notice, for receivers of one's own.
    Generic,
    /// `{"text": …}`, for Slack incoming webhooks (and Mattermost, Rocket.Chat).
    Slack,
    /// `{"content": …}`, for Discord webhooks.
    Discord,
}

impl WebhookFormat {
    /// Every format, for error messages.
    pub const ALL: [WebhookFormat; 3] = [
        WebhookFormat::Generic,
        WebhookFormat::Slack,
        WebhookFormat::Discord,
    ];

    /// The name used in `format:`.
    pub fn name(self) -> &'static str {
        match self {
            WebhookFormat::Generic => "generic",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Discord => "discord",
        }
    }

    /// Parses a format by its configuration name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == text.trim())
    }
}

/// `{command: {...}}`: a program run per ban and unban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandConfig {
    /// The program (an absolute path, or a name looked up on `PATH`) and its arguments, each
    /// a template; the program itself holds no placeholder.
    pub argv: Vec<ArgTemplate>,
    /// The events it runs for.
    pub on: NotifyOn,
    /// How long it may run before it (and everything it started) is killed; longer than 0.
    pub timeout: Duration,
}

/// A value a template can take from the notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placeholder {
    /// `<event>`: `ban` or `unban`.
    Event,
    /// `<ip>`: the host's address.
    Ip,
    /// `<jail>`: the jail's name.
    Jail,
    /// `<failures>`: failures counted when the ban was decided.
    Failures,
    /// `<bantime>`: the ban's length in whole seconds, `-1` for a permanent ban.
    Bantime,
    /// `<ban_count>`: which ban of this host it is.
    BanCount,
    /// `<origin>`: where the failures were read (file, container, journal); empty for a
    /// manual ban.
    Origin,
    /// `<time>`: when it happened, RFC 3339 in UTC.
    Time,
    /// `<matches>`: the matched log lines, one per line, as one argument. Attacker-written.
    Matches,
}

impl Placeholder {
    /// Every placeholder.
    pub const ALL: [Placeholder; 9] = [
        Placeholder::Event,
        Placeholder::Ip,
        Placeholder::Jail,
        Placeholder::Failures,
        Placeholder::Bantime,
        Placeholder::BanCount,
        Placeholder::Origin,
        Placeholder::Time,
        Placeholder::Matches,
    ];

    /// The name written between `<` and `>`.
    pub fn name(self) -> &'static str {
        match self {
            Placeholder::Event => "event",
            Placeholder::Ip => "ip",
            Placeholder::Jail => "jail",
            Placeholder::Failures => "failures",
            Placeholder::Bantime => "bantime",
            Placeholder::BanCount => "ban_count",
            Placeholder::Origin => "origin",
            Placeholder::Time => "time",
            Placeholder::Matches => "matches",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// One piece of an argument template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Value(Placeholder),
}

/// One argument of a command, with `<name>` placeholders filled in per notice. Whatever a
/// placeholder holds (log lines included) stays inside this one argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgTemplate {
    pieces: Vec<Piece>,
}

/// Why an argument template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `<name>` where `name` is no placeholder; the validator adds a suggestion.
    #[error("unknown placeholder `<{name}>`")]
    UnknownPlaceholder {
        /// The name as written.
        name: String,
    },
}

impl ArgTemplate {
    /// Reads `<name>` placeholders: a `<`, a name (a letter, then letters, digits, `_` or
    /// `-`), a `>`. Any other `<` is kept as text, so `a<b` or `<<ip>>` mean what they say.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('<') {
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let name_end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(after.len());
            let name = &after[..name_end];
            let closed = after[name_end..].starts_with('>');
            if closed && name.starts_with(|c: char| c.is_ascii_alphabetic()) {
                let placeholder = Placeholder::from_name(name).ok_or_else(|| {
                    TemplateError::UnknownPlaceholder {
                        name: name.to_string(),
                    }
                })?;
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Value(placeholder));
                rest = &after[name_end + 1..];
            } else {
                literal.push('<');
                rest = after;
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(ArgTemplate { pieces })
    }

    /// Whether any placeholder is used.
    pub fn has_placeholders(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Value(_)))
    }

    /// The argument for one notice; `value` gives each placeholder's text. A template that
    /// expands to nothing is still one (empty) argument.
    pub fn expand(&self, mut value: impl FnMut(Placeholder) -> String) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Value(placeholder) => out.push_str(&value(*placeholder)),
            }
        }
        out
    }
}

impl fmt::Display for ArgTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => f.write_str(text)?,
                Piece::Value(placeholder) => write!(f, "<{}>", placeholder.name())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_forms() {
        assert_eq!(parse_action_word("drop").unwrap(), FirewallAction::Drop);
        assert_eq!(parse_action_word("log").unwrap(), FirewallAction::Log);
        assert_eq!(
            parse_action_word("reject").unwrap(),
            FirewallAction::Reject(RejectWith::IcmpPortUnreachable)
        );
        assert_eq!(
            parse_action_word("reject-with  tcp-reset").unwrap(),
            FirewallAction::Reject(RejectWith::TcpReset)
        );
        assert_eq!(
            parse_action_word("reject-with icmp-host-unreachable").unwrap(),
            FirewallAction::Reject(RejectWith::IcmpHostUnreachable)
        );
    }

    #[test]
    fn refuses_unknown_words_and_types() {
        assert!(
            parse_action_word("ban")
                .unwrap_err()
                .contains("unknown action `ban`")
        );
        assert!(parse_action_word("drop now").is_err());
        assert!(
            parse_action_word("reject-with")
                .unwrap_err()
                .contains("needs a type")
        );
        assert!(
            parse_action_word("reject-with icmp-foo")
                .unwrap_err()
                .contains("icmp-foo")
        );
    }

    #[test]
    fn mapping_forms() {
        assert_eq!(
            parse_action_entry("reject-with", Some("icmp-net-unreachable")).unwrap(),
            FirewallAction::Reject(RejectWith::IcmpNetUnreachable)
        );
        assert!(parse_action_entry("drop", Some("x")).is_err());
        assert!(
            parse_action_entry("webhok", Some("x"))
                .unwrap_err()
                .contains("unknown action")
        );
        assert!(
            parse_action_entry("webhook", Some("x"))
                .unwrap_err()
                .contains("notification")
        );
        assert!(
            parse_action_word("command")
                .unwrap_err()
                .contains("needs settings")
        );
    }

    #[test]
    fn displays_as_written() {
        for text in ["drop", "log", "reject-with tcp-reset"] {
            assert_eq!(parse_action_word(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn templates_fill_placeholders_inside_one_argument() {
        let template = ArgTemplate::parse("--host=<ip>/<jail>").unwrap();
        assert!(template.has_placeholders());
        let filled = template.expand(|p| match p {
            Placeholder::Ip => "203.0.113.7".to_string(),
            Placeholder::Jail => "sshd".to_string(),
            other => panic!("unexpected {other:?}"),
        });
        assert_eq!(filled, "--host=203.0.113.7/sshd");
        assert_eq!(template.to_string(), "--host=<ip>/<jail>");
    }

    #[test]
    fn templates_keep_other_angle_brackets() {
        for text in [
            "a<b",
            "<<ip>>",
            "x < y > z",
            "<1ip>",
            "<>",
            "trailing<",
            "<ip",
        ] {
            let template = ArgTemplate::parse(text).unwrap();
            let filled = template.expand(|_| "V".to_string());
            assert_eq!(
                filled,
                text.replace("<ip>", "V"),
                "template {text:?} expanded wrongly"
            );
            assert_eq!(template.to_string(), text);
        }
        assert!(!ArgTemplate::parse("a<b").unwrap().has_placeholders());
        assert_eq!(ArgTemplate::parse("").unwrap().expand(|_| "V".into()), "");
    }

    #[test]
    fn templates_refuse_unknown_placeholders() {
        assert_eq!(
            ArgTemplate::parse("<ipp>").unwrap_err(),
            TemplateError::UnknownPlaceholder {
                name: "ipp".to_string()
            }
        );
        assert!(ArgTemplate::parse("<IP>").is_err());
        for placeholder in Placeholder::ALL {
            let text = format!("<{}>", placeholder.name());
            let template = ArgTemplate::parse(&text).unwrap();
            assert_eq!(
                template.expand(|p| format!("{p:?}")),
                format!("{placeholder:?}")
            );
        }
    }

    #[test]
    fn webhook_targets_hide_paths_and_credentials() {
        let hook = |url: &str| WebhookConfig::new(url, WebhookFormat::Generic).target();
        assert_eq!(
            hook("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com"
        );
        assert_eq!(
            hook("http://user:pw@127.0.0.1:8080/x?token=1"),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn notifications_run_on_their_events() {
        let mut webhook = WebhookConfig::new("http://127.0.0.1/", WebhookFormat::Slack);
        webhook.on = NotifyOn {
            ban: true,
            unban: false,
        };
        let notify = NotifyConfig::Webhook(webhook);
        assert!(notify.runs_on(NotifyEvent::Ban));
        assert!(!notify.runs_on(NotifyEvent::Unban));
        assert_eq!(notify.kind().name(), "webhook");
    }
}
