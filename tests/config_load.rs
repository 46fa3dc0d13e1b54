//! Valid configurations: every accepted spelling, the defaults, and how the file is found.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use logjail::config::{
    ActionConfig, Chain, Config, ConfigOrigin, FirewallAction, FirewallBackend, FirewallMode,
    FirewallTarget, IncrementConfig, JailConfig, LogFormat, LogLevel, PortRange, Ports, Protocol,
    ReadMode, RejectWith, SecretSource, SourceConfig,
};
use logjail::duration::BanTime;

/// A user filter every test can point jails at, so that they do not depend on the built-ins.
const FILTER: &str = "
filters:
  app:
    failregex: ['^login failed from <HOST>$']
";

fn load(yaml: &str) -> Config {
    let text = format!("{FILTER}{yaml}");
    Config::from_yaml_str(&text, "test.yaml").unwrap_or_else(|errors| panic!("{errors}"))
}

fn jail<'a>(config: &'a Config, name: &str) -> &'a JailConfig {
    config
        .jail(name)
        .unwrap_or_else(|| panic!("no jail {name}"))
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn durations_in_every_form() {
    let config = load(
        "
jails:
  s: {filter: app, findtime: 90s}
  m: {filter: app, findtime: 10m}
  h: {filter: app, findtime: 2h}
  d: {filter: app, findtime: 3d}
  w: {filter: app, findtime: 1w}
  int: {filter: app, findtime: 259200}
  text: {filter: app, findtime: '259200'}
  sum: {filter: app, findtime: 1h30m}
  words: {filter: app, findtime: 5 minutes}
",
    );
    let findtime = |name| jail(&config, name).findtime;
    assert_eq!(findtime("s"), secs(90));
    assert_eq!(findtime("m"), secs(600));
    assert_eq!(findtime("h"), secs(7_200));
    assert_eq!(findtime("d"), secs(259_200));
    assert_eq!(findtime("w"), secs(604_800));
    assert_eq!(findtime("int"), secs(259_200));
    assert_eq!(findtime("text"), secs(259_200));
    assert_eq!(findtime("sum"), secs(5_400));
    assert_eq!(findtime("words"), secs(300));
}

#[test]
fn bantime_minus_one_is_permanent() {
    let config = load(
        "
jails:
  int: {filter: app, bantime: -1}
  text: {filter: app, bantime: '-1'}
  word: {filter: app, bantime: permanent}
  finite: {filter: app, bantime: 259200}
",
    );
    assert_eq!(jail(&config, "int").bantime, BanTime::Permanent);
    assert_eq!(jail(&config, "text").bantime, BanTime::Permanent);
    assert_eq!(jail(&config, "word").bantime, BanTime::Permanent);
    assert_eq!(
        jail(&config, "finite").bantime,
        BanTime::Finite(secs(259_200))
    );
}

#[test]
fn fail2ban_defaults_when_a_key_is_missing_everywhere() {
    let config = load("jails:\n  app: {}\n");
    let app = jail(&config, "app");
    assert!(app.enabled);
    // The filter defaults to the jail's name.
    assert_eq!(app.filter.as_deref(), Some("app"));
    assert!(app.sources.is_empty());
    assert_eq!(app.bantime, BanTime::Finite(secs(600)));
    assert_eq!(app.findtime, secs(600));
    assert_eq!(app.maxretry, 5);
    assert!(app.ignoreself);
    assert!(app.ignoreip.is_empty());
    assert_eq!(app.action, ActionConfig::default());
    assert_eq!(app.action.firewall, FirewallAction::Drop);
    assert!(app.action.notify.is_empty());
    assert_eq!(app.increment, None);
    assert_eq!(app.ports, Ports::All);
    assert_eq!(app.protocol, Protocol::All);
    assert_eq!(app.chains, [Chain::Input, Chain::DockerUser]);
}

#[test]
fn defaults_section_applies_and_jail_values_replace_it() {
    let config = load(
        "
defaults:
  bantime: 1h
  findtime: 15m
  maxretry: 3
  ignoreip: [10.0.0.0/8, 192.0.2.7]
  ignoreself: false
  action: reject
jails:
  inherits: {filter: app}
  overrides:
    filter: app
    bantime: 2h
    maxretry: 7
    ignoreip: '2001:db8::/32'
    ignoreself: true
    action: log
",
    );
    let inherits = jail(&config, "inherits");
    assert_eq!(inherits.bantime, BanTime::Finite(secs(3_600)));
    assert_eq!(inherits.findtime, secs(900));
    assert_eq!(inherits.maxretry, 3);
    let networks: Vec<String> = inherits.ignoreip.iter().map(|n| n.to_string()).collect();
    assert_eq!(networks, ["10.0.0.0/8", "192.0.2.7/32"]);
    assert!(!inherits.ignoreself);
    assert_eq!(
        inherits.action.firewall,
        FirewallAction::Reject(RejectWith::IcmpPortUnreachable)
    );

    let overrides = jail(&config, "overrides");
    assert_eq!(overrides.bantime, BanTime::Finite(secs(7_200)));
    assert_eq!(overrides.findtime, secs(900));
    assert_eq!(overrides.maxretry, 7);
    let networks: Vec<String> = overrides.ignoreip.iter().map(|n| n.to_string()).collect();
    assert_eq!(networks, ["2001:db8::/32"]);
    assert!(overrides.ignoreself);
    assert_eq!(overrides.action.firewall, FirewallAction::Log);

    assert_eq!(config.defaults.maxretry, 3);
}

#[test]
fn increment_is_merged_key_by_key() {
    let config = load(
        "
defaults:
  increment:
    factor: 2
    maxtime: 5w
    rndtime: 10m
jails:
  off: {filter: app}
  on:
    filter: app
    increment: {enabled: true, multipliers: '1 2 4 8'}
  everywhere:
    filter: app
    increment: {enabled: true, factor: 1.5, overalljails: true, rndtime: 0}
",
    );
    assert_eq!(jail(&config, "off").increment, None);
    assert_eq!(
        jail(&config, "on").increment,
        Some(IncrementConfig {
            factor: 2.0,
            multipliers: vec![1, 2, 4, 8],
            maxtime: Some(secs(5 * 604_800)),
            rndtime: Some(secs(600)),
            overalljails: false,
        })
    );
    assert_eq!(
        jail(&config, "everywhere").increment,
        Some(IncrementConfig {
            factor: 1.5,
            multipliers: vec![],
            maxtime: Some(secs(5 * 604_800)),
            rndtime: None,
            overalljails: true,
        })
    );
}

#[test]
fn sources_of_every_kind() {
    let config = load(
        r#"
jails:
  app:
    sources:
      - file: /var/log/auth.log
        optional: true
      - file: /var/log/nginx/*.log
      - journal: {}
      - journal:
      - journal: {unit: ssh.service, match: [SYSLOG_IDENTIFIER=sshd, _COMM=sshd]}
      - container: {name: "wp-*", image: "wordpress*", label: "app=wp"}
      - container: {label: com.example.public}
      - journal: [SYSLOG_IDENTIFIER=dovecot]
"#,
    );
    let sources = &jail(&config, "app").sources;
    assert_eq!(sources.len(), 8);
    match &sources[0] {
        SourceConfig::File { path, optional } => {
            assert_eq!(path.as_str(), "/var/log/auth.log");
            assert!(*optional);
            assert!(!path.has_wildcards());
        }
        other => panic!("{other:?}"),
    }
    match &sources[1] {
        SourceConfig::File { path, optional } => {
            assert!(!optional);
            assert!(path.matches("/var/log/nginx/access.log"));
            assert!(!path.matches("/var/log/nginx/old/access.log"));
        }
        other => panic!("{other:?}"),
    }
    for whole_journal in &sources[2..4] {
        match whole_journal {
            SourceConfig::Journal(selector) => {
                assert_eq!(selector.unit, None);
                assert!(selector.matches.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
    match &sources[4] {
        SourceConfig::Journal(selector) => {
            assert_eq!(selector.unit.as_deref(), Some("ssh.service"));
            let matches: Vec<(&str, &str)> = selector
                .matches
                .iter()
                .map(|m| (m.field.as_str(), m.value.as_str()))
                .collect();
            assert_eq!(matches, [("SYSLOG_IDENTIFIER", "sshd"), ("_COMM", "sshd")]);
        }
        other => panic!("{other:?}"),
    }
    match &sources[5] {
        SourceConfig::Container(selector) => {
            let name = selector.name.as_ref().unwrap();
            assert!(name.matches("wp-blog") && !name.matches("blog-wp"));
            assert!(selector.image.as_ref().unwrap().matches("wordpress:6.5"));
            let label = selector.label.as_ref().unwrap();
            assert_eq!(
                (label.key.as_str(), label.value.as_deref()),
                ("app", Some("wp"))
            );
        }
        other => panic!("{other:?}"),
    }
    match &sources[6] {
        SourceConfig::Container(selector) => {
            assert!(selector.name.is_none() && selector.image.is_none());
            assert_eq!(selector.label.as_ref().unwrap().value, None);
        }
        other => panic!("{other:?}"),
    }
    match &sources[7] {
        SourceConfig::Journal(selector) => {
            assert_eq!(selector.unit, None);
            assert_eq!(selector.matches[0].field, "SYSLOG_IDENTIFIER");
            assert_eq!(selector.matches[0].value, "dovecot");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn actions_in_every_form() {
    let config = load(
        "
jails:
  word: {filter: app, action: drop}
  reject: {filter: app, action: reject}
  with: {filter: app, protocol: tcp, action: reject-with tcp-reset}
  mapping: {filter: app, action: {reject-with: icmp-host-unreachable}}
  list: {filter: app, action: [log]}
  listed_mapping: {filter: app, action: [{reject-with: icmp-net-unreachable}]}
",
    );
    let action = |name| jail(&config, name).action.firewall;
    assert_eq!(action("word"), FirewallAction::Drop);
    assert_eq!(
        action("reject"),
        FirewallAction::Reject(RejectWith::IcmpPortUnreachable)
    );
    assert_eq!(action("with"), FirewallAction::Reject(RejectWith::TcpReset));
    assert_eq!(
        action("mapping"),
        FirewallAction::Reject(RejectWith::IcmpHostUnreachable)
    );
    assert_eq!(action("list"), FirewallAction::Log);
    assert_eq!(
        action("listed_mapping"),
        FirewallAction::Reject(RejectWith::IcmpNetUnreachable)
    );
}

#[test]
fn ports_in_every_form() {
    let config = load(
        r#"
jails:
  all: {filter: app, ports: all}
  one: {filter: app, ports: 22, protocol: tcp}
  commas: {filter: app, ports: "ssh,https", protocol: udp}
  list: {filter: app, ports: [22, "8000:8100", http, 22, smtp]}
"#,
    );
    let range = |first, last| PortRange { first, last };
    assert_eq!(jail(&config, "all").ports, Ports::All);
    assert_eq!(jail(&config, "one").ports, Ports::List(vec![range(22, 22)]));
    assert_eq!(jail(&config, "one").protocol, Protocol::Tcp);
    assert_eq!(
        jail(&config, "commas").ports,
        Ports::List(vec![range(22, 22), range(443, 443)])
    );
    assert_eq!(jail(&config, "commas").protocol, Protocol::Udp);
    assert_eq!(
        jail(&config, "list").ports,
        Ports::List(vec![
            range(22, 22),
            range(8000, 8100),
            range(80, 80),
            range(25, 25)
        ])
    );
}

#[test]
fn manual_and_disabled_jails() {
    let config = load(
        "
jails:
  blacklist:
    manual: true
    bantime: 30d
    chains: [INPUT, DOCKER-USER, input]
  resting:
    filter: app
    enabled: false
",
    );
    let blacklist = jail(&config, "blacklist");
    assert!(blacklist.is_manual());
    assert_eq!(blacklist.bantime, BanTime::Finite(secs(30 * 86_400)));
    assert_eq!(blacklist.chains, [Chain::Input, Chain::DockerUser]);
    let resting = jail(&config, "resting");
    assert!(!resting.enabled);
    assert_eq!(config.jails.len(), 2);
}

#[test]
fn daemon_sections_default_and_override() {
    let defaults = load("");
    assert!(defaults.docker.enabled);
    assert_eq!(defaults.docker.host, None);
    assert_eq!(defaults.docker.read_mode, ReadMode::Auto);
    assert_eq!(
        defaults.store.path,
        Path::new("/var/lib/logjail/logjail.db")
    );
    assert_eq!(defaults.firewall.backend, FirewallBackend::Auto);
    assert_eq!(defaults.firewall.mode, FirewallMode::Auto);
    assert_eq!(defaults.firewall.target, FirewallTarget::Auto);
    assert!(!defaults.firewall.keep_bans_on_exit);
    assert_eq!(defaults.firewall.chain_prefix, "logjail");
    assert_eq!(
        defaults.control.socket,
        Path::new("/run/logjail/logjail.sock")
    );
    assert!(defaults.metrics.enabled);
    assert_eq!(defaults.metrics.listen.to_string(), "127.0.0.1:9191");
    assert_eq!(defaults.log.format, LogFormat::Text);
    assert_eq!(defaults.log.level, LogLevel::Info);

    let custom = load(
        "
docker: {enabled: false, host: 'tcp://10.0.0.2:2375', read_mode: api}
store: {path: /srv/logjail.db}
firewall: {backend: legacy, mode: rules, keep_bans_on_exit: true, chain_prefix: lj}
control: {socket: /tmp/lj.sock}
metrics: {enabled: true, listen: '[::1]:9000'}
log: {format: json, level: debug}
",
    );
    assert!(!custom.docker.enabled);
    assert_eq!(custom.docker.host.as_deref(), Some("tcp://10.0.0.2:2375"));
    assert_eq!(custom.docker.read_mode, ReadMode::Api);
    assert_eq!(custom.store.path, Path::new("/srv/logjail.db"));
    assert_eq!(custom.firewall.backend, FirewallBackend::Legacy);
    assert_eq!(custom.firewall.mode, FirewallMode::Rules);
    // Every spelling of the mode loads, the older explicit ones included.
    for (text, mode) in [
        ("auto", FirewallMode::Auto),
        ("ipset", FirewallMode::Ipset),
        ("rules", FirewallMode::Rules),
    ] {
        let loaded = load(&format!("firewall: {{mode: {text}}}\n"));
        assert_eq!(loaded.firewall.mode, mode, "{text}");
    }
    for (text, target) in [
        ("auto", FirewallTarget::Auto),
        ("docker", FirewallTarget::Docker),
        ("kubernetes", FirewallTarget::Kubernetes),
        ("host", FirewallTarget::Host),
    ] {
        let loaded = load(&format!("firewall: {{target: {text}}}\n"));
        assert_eq!(loaded.firewall.target, target, "{text}");
        assert_eq!(target.to_string(), text);
    }
    // Raw PREROUTING for a jail that drops; `docker-user` (raw PREROUTING on a Kubernetes
    // node) may reject, the firewall drops there and says so.
    let chains = load(
        "
jails:
  pods: {manual: true, chains: [PREROUTING, input, prerouting]}
  web: {manual: true, action: reject, chains: [docker-user]}
",
    );
    assert_eq!(
        jail(&chains, "pods").chains,
        [Chain::Prerouting, Chain::Input]
    );
    assert_eq!(jail(&chains, "web").chains, [Chain::DockerUser]);
    assert!(custom.firewall.keep_bans_on_exit);
    assert_eq!(custom.firewall.chain_prefix, "lj");
    assert_eq!(custom.control.socket, Path::new("/tmp/lj.sock"));
    assert!(custom.metrics.enabled);
    assert_eq!(custom.metrics.listen.to_string(), "[::1]:9000");
    assert_eq!(custom.log.format, LogFormat::Json);
    assert_eq!(custom.log.level, LogLevel::Debug);
}

#[test]
fn anchors_under_x_keys_and_merge_keys() {
    let config = load(
        "
x-strict: &strict
  maxretry: 2
  bantime: 1d
jails:
  one:
    <<: *strict
    filter: app
  two:
    <<: *strict
    filter: app
    maxretry: 4
",
    );
    assert_eq!(jail(&config, "one").maxretry, 2);
    assert_eq!(jail(&config, "one").bantime, BanTime::Finite(secs(86_400)));
    assert_eq!(jail(&config, "two").maxretry, 4);
}

#[test]
fn user_filters_are_compiled_and_shadow_builtins() {
    let config = load(
        "
  sshd:
    description: my own sshd rules
    failregex: '^bad login from <HOST>$'
    ignoreregex: ['^bad login from 127\\.']
jails:
  sshd: {}
",
    );
    assert_eq!(jail(&config, "sshd").filter.as_deref(), Some("sshd"));
    let compiled = &config.filters["sshd"];
    assert_eq!(compiled.failregex_count(), 1);
    assert_eq!(compiled.ignoreregex_count(), 1);
    assert_eq!(
        config.user_filters["sshd"].failregex,
        ["^bad login from <HOST>$"]
    );
    assert!(config.filters.contains_key("app"));
}

#[test]
fn origin_names_the_text() {
    let config = Config::from_yaml_str("", "inline").unwrap();
    assert_eq!(config.origin, ConfigOrigin::Text("inline".into()));
    let errors = Config::from_yaml_str("bogus: 1\n", "inline").unwrap_err();
    assert!(
        errors
            .to_string()
            .starts_with("inline:1:1: bogus: unknown key"),
        "{errors}"
    );
}

#[test]
fn explicit_path_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let default_path = dir.path().join("logjail.yaml");
    fs::write(&default_path, "jails: {}\n").unwrap();
    let missing = dir.path().join("missing.yaml");
    let errors = Config::load_or_default_at(Some(&missing), &default_path).unwrap_err();
    assert!(errors.to_string().contains("cannot read"), "{errors}");
}

#[test]
fn explicit_path_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let explicit = dir.path().join("mine.yaml");
    fs::write(&explicit, "jails:\n  blacklist: {manual: true}\n").unwrap();
    let config =
        Config::load_or_default_at(Some(&explicit), &dir.path().join("absent.yaml")).unwrap();
    assert_eq!(config.origin, ConfigOrigin::File(explicit));
    assert_eq!(config.jails.len(), 1);
}

#[test]
fn default_path_is_used_when_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let default_path = dir.path().join("logjail.yaml");
    fs::write(&default_path, "jails:\n  blacklist: {manual: true}\n").unwrap();
    let config = Config::load_or_default_at(None, &default_path).unwrap();
    assert_eq!(config.origin, ConfigOrigin::File(default_path));
    assert_eq!(config.jails.len(), 1);
}

#[test]
fn an_invalid_default_file_is_an_error_not_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let default_path = dir.path().join("logjail.yaml");
    fs::write(&default_path, "jails:\n  blacklist: {manual: maybe}\n").unwrap();
    let errors = Config::load_or_default_at(None, &default_path).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    assert_eq!(errors.errors()[0].jail(), Some("blacklist"));
}

#[test]
fn embedded_default_when_no_file_exists() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load_or_default_at(None, &dir.path().join("absent.yaml")).unwrap();
    assert_eq!(config.origin, ConfigOrigin::Embedded);
    assert!(config.docker.enabled);
    assert!(config.jail("blacklist").unwrap().is_manual());
    assert!(config.jail("sshd").is_some());
}

#[test]
fn a_fleet_with_its_secrets_out_of_the_file_and_jails_choosing_to_share() {
    let config = load(
        "
fleet:
  redis: rediss://redis.internal:6380/2
  name: node-1.eu
  username: logjail
  password_file: /run/secrets/redis
  hmac_key_file: /run/secrets/fleet-hmac
  share: false
jails:
  shared:
    filter: app
    share: true
  private:
    filter: app
",
    );
    let fleet = config.fleet.clone().unwrap();
    assert_eq!(fleet.redis, "rediss://redis.internal:6380/2");
    assert_eq!(fleet.name, "node-1.eu");
    assert_eq!(fleet.username.as_deref(), Some("logjail"));
    assert_eq!(
        fleet.password,
        Some(SecretSource::File("/run/secrets/redis".into()))
    );
    assert_eq!(
        fleet.hmac_key_file.as_deref(),
        Some(Path::new("/run/secrets/fleet-hmac"))
    );
    assert!(config.shares(jail(&config, "shared")));
    assert!(!config.shares(jail(&config, "private")));

    let env = load(
        "
fleet: {redis: 'unix:///run/redis/redis.sock', name: b, password_env: REDIS_PASSWORD}
jails:
  j: {filter: app}
",
    );
    let fleet = env.fleet.clone().unwrap();
    assert_eq!(
        fleet.password,
        Some(SecretSource::Env("REDIS_PASSWORD".into()))
    );
    assert!(env.shares(jail(&env, "j")), "fleet.share defaults to true");

    let alone = load("jails:\n  j: {filter: app}\n");
    assert!(alone.fleet.is_none());
    assert!(!alone.shares(jail(&alone, "j")));
}
