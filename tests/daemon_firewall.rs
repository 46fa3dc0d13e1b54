//! The real `logjail run` enforcing bans with real iptables and ipset, inside a network
//! namespace this test owns: a ban reaches the kernel, survives `kill -9` with its remaining
//! time and without duplicate rules, and an unban takes it out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::process::{Command, Output};

use support::process::{LogjailRun, cli, wait_until};

/// A network namespace deleted when the test ends, even on failure.
struct Namespace(String);

impl Namespace {
    fn new() -> Namespace {
        let name = format!("lj-dfw-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(status.success(), "ip netns add");
        Namespace(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn bans_reach_the_kernel_and_survive_kill_9() {
    let netns = Namespace::new();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("logjail.sock");
    let config = dir.path().join("logjail.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
store: {{path: {dir}/state.db}}
control: {{socket: {dir}/logjail.sock}}
docker: {{enabled: false}}
metrics: {{enabled: false}}
firewall: {{chain_prefix: ljt}}
filters:
  app:
    failregex: ['^login failed from <HOST>$']
jails:
  app:
    maxretry: 2
    bantime: 1h
    chains: [input]
    sources:
      - file: {dir}/app.log
"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();

    let mut daemon = LogjailRun::new(&config)
        .netns(&netns.0)
        .log(&dir.path().join("daemon1.log"))
        .spawn();
    wait_until("the control socket", || socket.exists());
    let mut log = std::fs::File::create(dir.path().join("app.log")).unwrap();
    writeln!(log, "login failed from 192.0.2.55").unwrap();
    writeln!(log, "login failed from 192.0.2.55").unwrap();
    drop(log);

    let set_has = |host: &str| stdout(&netns.run(&["ipset", "list", "ljt-s-app-4"])).contains(host);
    wait_until("the ban in the kernel set", || set_has("192.0.2.55"));
    let rules = stdout(&netns.run(&["iptables", "-S"]));
    assert_eq!(rules.matches("-A INPUT -j ljt-input").count(), 1, "{rules}");
    let status = stdout(&cli(&socket, &["status"]));
    assert!(status.contains("Firewall:"), "{status}");
    assert!(!status.contains("not managed"), "{status}");

    // Another tool flushes INPUT (as a firewall reload would): the jump comes back by itself.
    let flushed = netns.run(&["iptables", "-F", "INPUT"]);
    assert!(flushed.status.success());
    wait_until("the INPUT jump to come back", || {
        stdout(&netns.run(&["iptables", "-S", "INPUT"])).contains("-A INPUT -j ljt-input")
    });

    // A crash: no chance to clean up or flush anything.
    daemon.kill();
    std::fs::remove_file(&socket).ok();

    let mut daemon = LogjailRun::new(&config)
        .netns(&netns.0)
        .log(&dir.path().join("daemon2.log"))
        .spawn();
    wait_until("the control socket again", || {
        socket.exists() && cli(&socket, &["ping"]).status.success()
    });
    let banned = stdout(&cli(&socket, &["get", "app", "banned"]));
    assert_eq!(banned, "192.0.2.55\n");
    let listing = stdout(&netns.run(&["ipset", "list", "ljt-s-app-4"]));
    let timeout: u64 = listing
        .lines()
        .find(|l| l.starts_with("192.0.2.55"))
        .and_then(|l| l.split("timeout ").nth(1))
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no timeout in {listing}"));
    assert!(
        (3500..=3600).contains(&timeout),
        "remaining time kept: {timeout}"
    );
    let rules = stdout(&netns.run(&["iptables", "-S"]));
    assert_eq!(
        rules.matches("-A INPUT -j ljt-input").count(),
        1,
        "no duplicate jump: {rules}"
    );
    assert_eq!(
        rules.matches("--match-set ljt-s-app-4").count(),
        1,
        "no duplicate rule: {rules}"
    );

    // The CLI answers a ban or an unban once the kernel has it, not merely the decision.
    let out = cli(&socket, &["ban", "app", "192.0.2.77"]);
    assert!(out.status.success());
    assert!(
        set_has("192.0.2.77"),
        "ban answered before it reached the set"
    );
    let out = cli(&socket, &["unban", "app", "192.0.2.55"]);
    assert!(out.status.success());
    assert!(
        !set_has("192.0.2.55"),
        "unban answered before the set lost the entry"
    );

    // A clean stop removes logjail's jumps, chains and sets.
    daemon.stop();
    let rules = stdout(&netns.run(&["iptables", "-S"]));
    assert!(!rules.contains("ljt-"), "{rules}");
}
