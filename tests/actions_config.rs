//! `action:` with notifications: every accepted spelling, the defaults, and each mistake
//! reported where it is written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use logjail::config::action::{
    CommandConfig, DEFAULT_COMMAND_TIMEOUT, DEFAULT_WEBHOOK_RETRIES, DEFAULT_WEBHOOK_TIMEOUT,
    NotifyConfig, NotifyEvent, NotifyOn, WebhookConfig, WebhookFormat,
};
use logjail::config::{Config, FirewallAction, RejectWith};

/// A user filter the jails point at, so that the tests do not depend on the built-ins.
const FILTER: &str = "filters:
  app:
    failregex: ['^login failed from <HOST>$']
";

fn load(yaml: &str) -> Config {
    Config::from_yaml_str(&format!("{FILTER}{yaml}"), "test.yaml")
        .unwrap_or_else(|errors| panic!("{errors}"))
}

/// The errors of `yaml` (placed after the three filter lines, so line numbers start at 4).
fn errors(yaml: &str) -> Vec<String> {
    match Config::from_yaml_str(&format!("{FILTER}{yaml}"), "test.yaml") {
        Ok(_) => panic!("validated but should not:\n{yaml}"),
        Err(errors) => errors.iter().map(|e| e.without_origin()).collect(),
    }
}

fn webhook(notify: &NotifyConfig) -> &WebhookConfig {
    match notify {
        NotifyConfig::Webhook(webhook) => webhook,
        other => panic!("not a webhook: {other:?}"),
    }
}

fn command(notify: &NotifyConfig) -> &CommandConfig {
    match notify {
        NotifyConfig::Command(command) => command,
        other => panic!("not a command: {other:?}"),
    }
}

#[test]
fn notifications_sit_next_to_the_firewall_verdict() {
    let config = load(
        r#"jails:
  full:
    filter: app
    protocol: tcp
    action:
      - reject-with tcp-reset
      - webhook:
          url: https://hooks.slack.com/services/T0/B0/XYZ
          format: slack
          timeout: 5s
          retries: 0
          on: ban
          headers: {Authorization: "Bearer abc", X-Count: 3}
      - command:
          argv: [/usr/local/bin/notify, "--ip=<ip>", "<jail>", "<matches>", ""]
          on: [unban]
          timeout: 1m
      - {webhook: {url: "http://127.0.0.1:8080/hook"}}
      - {command: [notify-send, "<event> <ip>"]}
"#,
    );
    let action = &config.jail("full").unwrap().action;
    assert_eq!(
        action.firewall,
        FirewallAction::Reject(RejectWith::TcpReset)
    );
    assert_eq!(action.notify.len(), 4);

    let slack = webhook(&action.notify[0]);
    assert_eq!(slack.url, "https://hooks.slack.com/services/T0/B0/XYZ");
    assert_eq!(slack.format, WebhookFormat::Slack);
    assert_eq!(slack.timeout, Duration::from_secs(5));
    assert_eq!(slack.retries, 0);
    assert_eq!(
        slack.on,
        NotifyOn {
            ban: true,
            unban: false
        }
    );
    assert_eq!(
        slack.headers,
        [
            ("Authorization".to_string(), "Bearer abc".to_string()),
            ("X-Count".to_string(), "3".to_string())
        ]
    );

    let notify = command(&action.notify[1]);
    let argv: Vec<String> = notify.argv.iter().map(ToString::to_string).collect();
    assert_eq!(
        argv,
        [
            "/usr/local/bin/notify",
            "--ip=<ip>",
            "<jail>",
            "<matches>",
            ""
        ]
    );
    assert!(action.notify[1].runs_on(NotifyEvent::Unban));
    assert!(!action.notify[1].runs_on(NotifyEvent::Ban));
    assert_eq!(notify.timeout, Duration::from_secs(60));

    let generic = webhook(&action.notify[2]);
    assert_eq!(generic.format, WebhookFormat::Generic);
    assert_eq!(generic.timeout, DEFAULT_WEBHOOK_TIMEOUT);
    assert_eq!(generic.retries, DEFAULT_WEBHOOK_RETRIES);
    assert_eq!(generic.on, NotifyOn::default());
    assert!(generic.headers.is_empty());

    let short = command(&action.notify[3]);
    assert_eq!(short.argv.len(), 2);
    assert_eq!(short.timeout, DEFAULT_COMMAND_TIMEOUT);
    assert_eq!(short.on, NotifyOn::default());
}

#[test]
fn jails_inherit_the_default_action_whole_or_replace_it() {
    let config = load(
        r#"defaults:
  action: [log, {webhook: {url: "https://example.org/hook", format: discord}}]
jails:
  inherits: {filter: app}
  replaces: {filter: app, action: drop}
"#,
    );
    let inherits = &config.jail("inherits").unwrap().action;
    assert_eq!(inherits.firewall, FirewallAction::Log);
    assert_eq!(webhook(&inherits.notify[0]).format, WebhookFormat::Discord);
    assert_eq!(config.defaults.action, *inherits);
    let replaces = &config.jail("replaces").unwrap().action;
    assert_eq!(replaces.firewall, FirewallAction::Drop);
    assert!(replaces.notify.is_empty());
}

#[test]
fn webhook_mistakes_are_reported_where_they_are() {
    assert_eq!(
        errors(
            r#"jails:
  a:
    filter: app
    action:
      - drop
      - webhook:
          url: ftp://example.org/hook
          format: slak
          timeout: 0
          retries: 11
          on: [ban, banned]
          headers: {Host: x, "bad name": y}
          colour: red
      - webhook: {format: slack}
      - webhook: https://example.org/
      - webhook: {url: "not a url"}
"#
        ),
        [
            "10:16: jail \"a\": action[1].webhook.url: `ftp:` URLs are not supported: use an \
             http:// or https:// URL",
            "11:19: jail \"a\": action[1].webhook.format: unknown format `slak` (did you mean \
             `slack`?)",
            "12:20: jail \"a\": action[1].webhook.timeout: must be longer than 0",
            "13:20: jail \"a\": action[1].webhook.retries: must be a whole number from 0 to 10 \
             (got 11)",
            "14:21: jail \"a\": action[1].webhook.on[1]: unknown event `banned` (expected ban \
             or unban)",
            "15:21: jail \"a\": action[1].webhook.headers.Host: `Host` is set by logjail itself",
            "15:30: jail \"a\": action[1].webhook.headers.bad name: `bad name` is not a valid \
             header name",
            "16:11: jail \"a\": action[1].webhook.colour: unknown key (expected one of: url, \
             format, timeout, retries, on, headers)",
            "17:9: jail \"a\": action[2].webhook: needs `url:`",
            "18:18: jail \"a\": action[3].webhook: must be a mapping of settings, e.g. `{url: \
             \"https://…\", format: slack}`, not a string",
            "19:24: jail \"a\": action[4].webhook.url: \"not a url\" is not a URL (relative URL \
             without a base)",
        ]
    );
}

#[test]
fn command_mistakes_are_reported_where_they_are() {
    assert_eq!(
        errors(
            r#"jails:
  a:
    filter: app
    action:
      - drop
      - command: {argv: [/usr/bin/notify, "<ipp>", "<jail>", "<zzz>"], timeout: 0s}
      - command: {argv: []}
      - command: {argv: "/usr/bin/notify <ip>"}
      - command: {argv: ["<jail>.sh"]}
      - command: {argv: [bin/notify]}
      - command: {argv: ["notify --now"]}
      - command: {argv: [/bin/sh, -c, "echo <matches>"]}
      - command: {argv: [/usr/bin/env, bash, -ec, "notify <ip>"]}
      - command: {on: ban}
      - command
"#
        ),
        [
            "9:43: jail \"a\": action[1].command.argv[1]: unknown placeholder `<ipp>` (did you \
             mean `<ip>`?)",
            "9:62: jail \"a\": action[1].command.argv[3]: unknown placeholder `<zzz>` (expected \
             one of: <event>, <ip>, <jail>, <failures>, <bantime>, <ban_count>, <origin>, \
             <time>, <matches>)",
            "9:81: jail \"a\": action[1].command.timeout: must be longer than 0",
            "10:25: jail \"a\": action[2].command.argv: needs at least the program to run",
            "11:25: jail \"a\": action[3].command.argv: must be a list: the program, then one \
             item per argument, e.g. [/usr/local/bin/notify, \"<jail>\", \"<ip>\"] (it is never \
             split or given to a shell), not a string",
            "12:26: jail \"a\": action[4].command.argv[0]: the program must be fixed: \
             placeholders may only appear in its arguments",
            "13:26: jail \"a\": action[5].command.argv[0]: the program must be an absolute path \
             or a name looked up on PATH",
            "14:26: jail \"a\": action[6].command.argv[0]: the program name has a space: give \
             each argument as its own list item",
            "15:39: jail \"a\": action[7].command.argv[2]: placeholders inside a shell script \
             would let log text run as code; pass them as arguments of their own instead, e.g. \
             [/bin/sh, -c, 'notify \"$1\"', sh, \"<ip>\"]",
            "16:51: jail \"a\": action[8].command.argv[3]: placeholders inside a shell script \
             would let log text run as code; pass them as arguments of their own instead, e.g. \
             [/bin/sh, -c, 'notify \"$1\"', sh, \"<ip>\"]",
            "17:9: jail \"a\": action[9].command: needs `argv:`",
            "18:9: jail \"a\": action[10]: `command` needs settings, e.g. `{command: {argv: \
             [/usr/local/bin/notify, \"<ip>\"]}}`",
        ]
    );
}

#[test]
fn the_verdict_is_still_required_and_unique() {
    assert_eq!(
        errors(
            r#"defaults:
  action: [{webhook: {url: "https://example.org/"}}]
jails:
  a: {filter: app, action: [drop, log]}
  b: {filter: app, action: [webhok]}
  c: {filter: app, action: {commands: {argv: [x]}}}
"#
        ),
        [
            "5:11: defaults.action: needs one of drop, reject, reject-with TYPE or log next to \
             the notifications, e.g. `[drop, {webhook: …}]` (`log` for a dry run)",
            "7:35: jail \"a\": action[1]: only one of drop, reject and log per jail (`drop` is \
             already given)",
            "8:29: jail \"b\": action[0]: unknown action `webhok` (did you mean `webhook`?)",
            "9:28: jail \"c\": action: unknown action `commands` (did you mean `command`?)",
        ]
    );
}

#[test]
fn a_shell_may_run_a_fixed_script_with_placeholders_as_its_arguments() {
    let config = load(
        r#"jails:
  a:
    filter: app
    action:
      - drop
      - command: [/bin/sh, -c, 'logger -t logjail "banned $1"', sh, "<ip>"]
"#,
    );
    let action = &config.jail("a").unwrap().action;
    assert_eq!(command(&action.notify[0]).argv.len(), 5);
}

/// The commented `action:` example of `examples/logjail.yaml`, uncommented.
fn commented_example() -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/logjail.yaml"),
    )
    .unwrap();
    let mut lines = text.lines().skip_while(|line| line.trim() != "# action:");
    let first = lines.next().expect("no commented `# action:` example");
    let indent = first.len() - first.trim_start().len();
    let prefix = format!("{}# ", " ".repeat(indent));
    std::iter::once(first)
        .chain(lines.take_while(|line| line.starts_with(&format!("{prefix}  "))))
        .map(|line| line.replacen(&prefix, "", 1))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first YAML block of the notifications section of `examples/README.md`.
fn readme_example() -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/README.md"),
    )
    .unwrap();
    let section = &text[text
        .find("## Notifications")
        .expect("no notifications section")..];
    let block = &section[section.find("```yaml\n").unwrap() + 8..];
    block[..block.find("```").unwrap()].to_string()
}

#[test]
fn the_documented_examples_validate() {
    for example in [commented_example(), readme_example()] {
        assert!(example.contains("webhook"), "{example}");
        let indented: String = example
            .lines()
            .map(|line| format!("    {line}\n"))
            .collect();
        let config = load(&format!("jails:\n  a:\n    filter: app\n{indented}"));
        let action = &config.jail("a").unwrap().action;
        assert_eq!(action.firewall, FirewallAction::Drop);
        assert!(action.notify.len() >= 2, "{example}");
    }
}
