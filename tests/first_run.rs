//! The README's first command on a host as a new user has it: the iptables package but no
//! ipset, no Docker engine, or not even iptables. The real `logjail run` binary runs inside a
//! fresh network namespace with a PATH that holds links to exactly the programs such a host
//! has, so the machine's own ipset (installed for the other tests) stays out of sight.
//!
//! The example configuration is the one the README runs, as shipped; only its store, socket
//! and Docker paths are moved into the test's folder so that the machine's are never used.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod firewall_support;
mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use firewall_support::Netns;
use logjail::action::Notifier;
use logjail::clock::SystemClock;
use logjail::config::Config;
use logjail::jail::task::{self as jails, CountedHistory, Effects};
use logjail::messages::JailEvent;
use logjail::routing::labels::{self, LabelContext};
use logjail::store::Store;
use logjail::store::task as store_task;
use support::process::{LogjailProcess, LogjailRun, cli, find_program, wait_until};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/logjail.yaml");
/// What `firewall.mode: auto` warns when it falls back to rules.
const FALLBACK_WARNING: &str = "ipset does not work here, so each ban is one iptables rule";

/// A folder to be the daemon's whole PATH: links to journalctl (every systemd host has it)
/// and, with `iptables`, to every program of the iptables package (`iptables*`,
/// `ip6tables*`, `xtables*`). Never ipset.
fn host_path(dir: &Path, iptables: bool) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(find_program("journalctl"), bin.join("journalctl")).unwrap();
    if iptables {
        let sbin = find_program("iptables").parent().unwrap().to_path_buf();
        let mut linked = 0;
        for entry in std::fs::read_dir(&sbin).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if ["iptables", "ip6tables", "xtables"]
                .iter()
                .any(|stem| name.starts_with(stem))
            {
                std::os::unix::fs::symlink(sbin.join(&name), bin.join(&name)).unwrap();
                linked += 1;
            }
        }
        assert!(linked >= 4, "iptables programs in {}", sbin.display());
    }
    assert!(!bin.join("ipset").exists());
    bin
}

/// `logjail run -c CONFIG` in the namespace with only `path` as PATH, stderr to `log`.
fn spawn(netns: &Netns, path: &Path, config: &Path, log: &Path) -> LogjailProcess {
    LogjailRun::new(config)
        .netns(&netns.name)
        .path(path)
        .log(log)
        .spawn()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `examples/logjail.yaml` with its store, control socket and Docker endpoint moved into
/// `dir` (no engine answers there: Docker is absent), everything else as shipped. The store's
/// and the socket's folders do not exist yet, as on a fresh host.
fn example_config(dir: &Path) -> String {
    let mut text = std::fs::read_to_string(EXAMPLE).unwrap();
    for (from, to) in [
        (
            "/var/lib/logjail/logjail.db",
            format!("{}/lib/logjail.db", dir.display()),
        ),
        (
            "/run/logjail/logjail.sock",
            format!("{}/run/logjail.sock", dir.display()),
        ),
        (
            "unix:///var/run/docker.sock",
            format!("unix://{}/no-docker.sock", dir.display()),
        ),
    ] {
        assert_eq!(text.matches(from).count(), 1, "{from} in the example");
        text = text.replace(from, &to);
    }
    text
}

/// Lines of `iptables -S` in the namespace.
fn iptables_rules(netns: &Netns) -> String {
    netns.sh("iptables", &["-S"])
}

#[test]
fn the_example_runs_without_ipset_and_bans_with_rules() {
    let netns = Netns::new("ljfr");
    let dir = tempfile::tempdir().unwrap();
    let path = host_path(dir.path(), true);
    let config = dir.path().join("logjail.yaml");
    std::fs::write(&config, example_config(dir.path())).unwrap();
    let socket = dir.path().join("run/logjail.sock");

    let mut daemon = spawn(&netns, &path, &config, &dir.path().join("daemon.log"));
    daemon.wait_ready();

    let log = daemon.log();
    assert_eq!(log.matches(FALLBACK_WARNING).count(), 1, "{log}");
    assert!(log.contains("apt-get install ipset"), "{log}");
    let status = stdout(&cli(&socket, &["status"]));
    assert!(
        status.contains("rules mode (auto: ipset does not work"),
        "{status}"
    );

    // A manual ban lands as one rule per address in both chains of the blacklist jail.
    let out = cli(&socket, &["ban", "blacklist", "192.0.2.66"]);
    assert!(out.status.success(), "{out:?}");
    let rules = iptables_rules(&netns);
    for chain in ["logjail-j-blacklist-i", "logjail-j-blacklist-d"] {
        let bans: Vec<&str> = rules
            .lines()
            .filter(|line| line.starts_with(&format!("-A {chain} -s 192.0.2.66/32")))
            .collect();
        assert_eq!(bans.len(), 1, "{chain}: {rules}");
        assert!(bans[0].ends_with("-j DROP"), "{}", bans[0]);
    }
    assert!(rules.contains("-A INPUT -j logjail-input"), "{rules}");
    assert!(!rules.contains("match-set"), "no set rule: {rules}");
    let sets = netns.sh("ipset", &["list", "-n"]);
    assert!(!sets.contains("logjail"), "no set made: {sets}");

    // No Docker engine answers: the daemon says so and keeps going.
    assert!(
        daemon.log().contains("cannot reach Docker: retrying"),
        "{}",
        daemon.log()
    );
    assert!(daemon.running());
    let banned = stdout(&cli(&socket, &["get", "blacklist", "banned"]));
    assert_eq!(banned, "192.0.2.66\n");

    let out = cli(&socket, &["unban", "blacklist", "192.0.2.66"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!iptables_rules(&netns).contains("192.0.2.66"));

    assert!(daemon.stop().success(), "{}", daemon.log());
    let rules = iptables_rules(&netns);
    assert!(
        !rules.contains("logjail"),
        "clean stop leaves nothing: {rules}"
    );
    let log = daemon.log();
    assert_eq!(log.matches(FALLBACK_WARNING).count(), 1, "{log}");
    assert!(
        dir.path().join("lib/logjail.db").is_file(),
        "the store's folder was made"
    );
}

#[test]
fn an_explicit_ipset_mode_still_needs_ipset() {
    let netns = Netns::new("ljfi");
    let dir = tempfile::tempdir().unwrap();
    let path = host_path(dir.path(), true);
    let text = example_config(dir.path());
    let explicit = "\n  mode: ipset\n";
    let text = text.replacen("\n  mode: auto ", explicit, 1);
    assert!(text.contains(explicit), "the example's firewall.mode");
    let config = dir.path().join("logjail.yaml");
    std::fs::write(&config, text).unwrap();

    let mut daemon = spawn(&netns, &path, &config, &dir.path().join("daemon.log"));
    let status = daemon.wait_exit();
    let log = daemon.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("firewall.mode is ipset but ipset does not work"),
        "{log}"
    );
    assert!(log.contains("apt-get install ipset"), "{log}");
    assert!(!log.contains(FALLBACK_WARNING), "{log}");
    assert!(!iptables_rules(&netns).contains("logjail"));
}

/// A configuration with one file jail and one manual jail, both with `action`.
fn two_jails(dir: &Path, action: &str) -> String {
    format!(
        r#"
store: {{path: {dir}/state.db}}
control: {{socket: {dir}/logjail.sock}}
docker: {{enabled: false}}
filters:
  app:
    failregex: ['^login failed from <HOST>$']
jails:
  app:
    maxretry: 2
    action: {action}
    sources:
      - file: {dir}/app.log
  watchlist:
    manual: true
    action: log
"#,
        dir = dir.display()
    )
}

#[test]
fn without_iptables_log_only_jails_run_and_blocking_ones_are_refused() {
    let netns = Netns::new("ljfn");
    let dir = tempfile::tempdir().unwrap();
    let path = host_path(dir.path(), false);
    let config = dir.path().join("logjail.yaml");
    let socket = dir.path().join("logjail.sock");
    std::fs::write(&config, two_jails(dir.path(), "log")).unwrap();
    std::fs::write(dir.path().join("app.log"), "").unwrap();

    let mut daemon = spawn(&netns, &path, &config, &dir.path().join("daemon.log"));
    daemon.wait_ready();
    let log = daemon.log();
    assert!(log.contains("running without a firewall"), "{log}");
    let status = stdout(&cli(&socket, &["status"]));
    assert!(status.contains("Firewall:\t\tnone ("), "{status}");
    assert!(status.contains("apt-get install iptables"), "{status}");

    // The jails judge and ban as ever; nothing reaches a firewall.
    std::fs::write(
        dir.path().join("app.log"),
        "login failed from 192.0.2.7\nlogin failed from 192.0.2.7\n",
    )
    .unwrap();
    wait_until("the log-only ban", || {
        stdout(&cli(&socket, &["get", "app", "banned"])) == "192.0.2.7\n"
    });
    let out = cli(&socket, &["ban", "watchlist", "192.0.2.8"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!iptables_rules(&netns).contains("logjail"));

    // A reload that would block is refused; the running jails stay.
    std::fs::write(&config, two_jails(dir.path(), "drop")).unwrap();
    let out = cli(&socket, &["reload"]);
    assert!(!out.status.success(), "{out:?}");
    let answer = String::from_utf8_lossy(&out.stderr).into_owned() + &stdout(&out);
    assert!(answer.contains("(app) need a firewall"), "{answer}");
    assert_eq!(
        stdout(&cli(&socket, &["get", "app", "banned"])),
        "192.0.2.7\n"
    );
    assert!(daemon.stop().success(), "{}", daemon.log());

    // Started so, the daemon refuses at once and names the package and the jail.
    let mut daemon = spawn(&netns, &path, &config, &dir.path().join("daemon2.log"));
    let status = daemon.wait_exit();
    let log = daemon.log();
    assert!(!status.success(), "{log}");
    assert!(log.contains("apt-get install iptables"), "{log}");
    assert!(
        log.contains("needed by the jails that block addresses: app;"),
        "{log}"
    );
    assert!(!socket.exists() || !cli(&socket, &["ping"]).status.success());
}

/// Label-defined jails (Docker containers define them at any time) go through the jail
/// task's definition, the real one here with a real store: without a firewall those that
/// would block are refused with the reason, log-only ones are taken; with a firewall (or
/// none managed, as embedded daemons run) all are.
#[tokio::test]
async fn without_a_firewall_label_jails_that_block_are_refused() {
    let config = Config::from_yaml_str("docker: {enabled: false}\n", "labels.yaml").unwrap();
    let filters: BTreeSet<String> = ["sshd".to_string()].into();
    let yaml_jails = BTreeSet::new();
    let context = LabelContext {
        defaults: &config.defaults,
        filters: &filters,
        yaml_jails: &yaml_jails,
        chain_prefix: &config.firewall.chain_prefix,
        host_network: false,
    };
    let reason: Arc<str> = Arc::from("iptables-nft is not installed");
    for no_firewall in [Some(reason), None] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let (store_handle, recovered, store_thread) = store_task::start(
            store,
            chrono::Utc::now(),
            chrono::DateTime::<chrono::Utc>::MIN_UTC,
        )
        .unwrap();
        let stop = CancellationToken::new();
        let (notifier, notifier_task) = Notifier::start(stop.clone());
        let effects = Effects {
            store: store_handle.clone(),
            observers: broadcast::channel(16).0,
            notifier,
            enforcer: None,
            no_firewall: no_firewall.clone(),
            fleet: None,
        };
        let (events, receiver) = mpsc::channel(16);
        let task = tokio::spawn(jails::run(
            Vec::new(),
            jails::HeldBans::default(),
            CountedHistory::from_store(recovered.history),
            receiver,
            effects,
            Arc::new(SystemClock),
            "none".to_string(),
        ));
        // No `action` label: a label jail blocks by default, like any jail.
        for (name, action) in [
            ("web-default", None),
            ("web-drop", Some("drop")),
            ("web-reject", Some("reject")),
            ("web-log", Some("log")),
        ] {
            let mut labels =
                HashMap::from([(format!("logjail.jail.{name}.filter"), "sshd".to_string())]);
            if let Some(action) = action {
                labels.insert(format!("logjail.jail.{name}.action"), action.to_string());
            }
            let parsed = labels::parse(&labels, &context);
            assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
            let jail = parsed.defined.into_iter().next().unwrap();
            let definition = labels::definition(name, &labels, "container web", false);
            let (reply, answer) = oneshot::channel();
            events
                .send(JailEvent::Define {
                    config: Box::new(jail),
                    definition: Box::new(definition),
                    reply,
                })
                .await
                .unwrap();
            let answer = answer.await.unwrap().map_err(|refused| refused.to_string());
            match (&no_firewall, action) {
                (Some(_), Some("log")) | (None, _) => {
                    assert_eq!(answer, Ok(()), "{name} with {no_firewall:?}")
                }
                (Some(reason), _) => {
                    let message = answer.unwrap_err();
                    assert!(
                        message.contains("blocks addresses but logjail runs without a firewall")
                            && message.contains(&**reason),
                        "{name}: {message}"
                    );
                }
            }
        }
        drop(events);
        task.await.unwrap();
        stop.cancel();
        notifier_task.await.unwrap();
        store_handle.flush().await;
        drop(store_handle);
        tokio::task::spawn_blocking(move || store_thread.join())
            .await
            .unwrap()
            .unwrap();
    }
}
