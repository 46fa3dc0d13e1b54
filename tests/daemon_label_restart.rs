//! A jail defined only by a container's labels keeps its ban across every way logjail stops
//! and starts again, proven with real packets on a Docker host in a network namespace (the
//! lab of `firewall_support::docker_host`: a private engine, a container publishing a port,
//! clients A and B in namespaces of their own) and the real `logjail run` binary:
//!
//! - `kill -9` (the kernel keeps logjail's chains and sets; the start must adopt them, not
//!   remove them as leftovers of an unknown jail);
//! - a clean stop (SIGTERM takes the chains and sets out; the start must put the ban back
//!   from the store before the container's labels are read again);
//! - the container re-created with changed labels while logjail was down (the new labels
//!   win: the ban moves to the new verdict);
//! - the container gone (the ban stays until its time ends, is listed, and `unban` lifts it).
//!
//! Each time A stays blocked on the published port while B is served, and A is in the
//! jail's set exactly once. The configuration file has no jail at all: only a filter the
//! labels name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod firewall_support;
mod support;

use std::path::Path;
use std::process::Command;

use firewall_support::docker_host::{
    Client, PUBLISHED, assert_docker_user_ban_verdict, set_holds, tail, wait_until,
};
use firewall_support::{Netns, Reach, unique};
use logjail::firewall::Family;
use support::dockerd::PrivateDockerd;
use support::process::{LogjailProcess, LogjailRun};
use support::{Containers, docker_cli};

const IMAGE: &str = "logjail-labels/busybox:local";
const JAIL: &str = "shop";

fn config(dir: &Path, engine: &str, prefix: &str) -> String {
    format!(
        r#"
store: {{path: {dir}/state.db}}
control: {{socket: {dir}/lj.sock}}
docker: {{enabled: true, host: "{engine}"}}
metrics: {{enabled: false}}
firewall: {{chain_prefix: {prefix}}}
filters:
  httpd404:
    failregex: ['^<HOST>:\d+: response:404$']
"#,
        dir = dir.display()
    )
}

/// The labels that define the jail: three 404s ban for an hour on the published port.
fn labels(action: &str) -> Vec<String> {
    [
        format!("logjail.jail.{JAIL}.filter=httpd404"),
        format!("logjail.jail.{JAIL}.maxretry=3"),
        format!("logjail.jail.{JAIL}.bantime=1h"),
        format!("logjail.jail.{JAIL}.port={PUBLISHED}"),
        format!("logjail.jail.{JAIL}.protocol=tcp"),
        format!("logjail.jail.{JAIL}.action={action}"),
    ]
    .into_iter()
    .flat_map(|label| ["--label".to_string(), label])
    .collect()
}

/// busybox httpd on the published port, logging each request with the client's address.
async fn run_shop(containers: &mut Containers, name: &str, action: &str) {
    let port = format!("0.0.0.0:{PUBLISHED}:8080");
    let mut args: Vec<String> = vec![
        // httpd as PID 1 ignores SIGTERM: the engine's stop would wait 10 s for it.
        "--stop-timeout".into(),
        "1".into(),
        "-p".into(),
        port,
    ];
    args.extend(labels(action));
    args.extend(
        [
            IMAGE,
            "sh",
            "-c",
            "/bin/busybox mkdir -p /www && echo served > /www/index.html && exec /bin/busybox httpd -f -v -p 8080 -h /www",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    containers.run(name, &args).await;
}

fn docker(engine: &str, args: &[&str]) -> String {
    let output = Command::new(docker_cli())
        .args(["-H", engine])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Entries of an ipset set in the host namespace.
fn set_entries(host: &Netns, set: &str) -> Vec<String> {
    let listing = host.sh("ipset", &["list", set]);
    listing
        .lines()
        .skip_while(|line| !line.starts_with("Members:"))
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(str::to_string)
        .collect()
}

struct Lab {
    host: Netns,
    a: Client,
    b: Client,
    engine: PrivateDockerd,
    prefix: String,
    set: String,
}

impl Lab {
    fn context(&self, logjail: &LogjailProcess) -> String {
        format!(
            "logjail:\n{}\nengine:\n{}",
            logjail.log(),
            tail(&self.engine.log())
        )
    }

    /// A is banned in the label jail exactly once, blocked by `verdict` (as `blocked` says),
    /// and B served.
    fn assert_banned_once(&self, logjail: &LogjailProcess, when: &str, verdict: Verdict) {
        let (rule_end, blocked) = verdict;
        wait_until(
            &format!("{when}: A in {}", self.set),
            || self.context(logjail),
            || set_holds(&self.host, &self.set, self.a.v4),
        );
        let reach = self.a.reach(Family::V4);
        assert!(blocked(reach), "{when}: A reached the port: {reach:?}");
        assert_eq!(
            self.b.reach(Family::V4),
            Reach::Connected,
            "{when}: B is served"
        );
        let entries = set_entries(&self.host, &self.set);
        assert_eq!(entries.len(), 1, "{when}: one entry: {entries:?}");
        let banned = logjail.must(&["banned"]);
        let lines: Vec<&str> = banned.lines().collect();
        assert_eq!(lines.len(), 1, "{when}: one ban listed:\n{banned}");
        assert!(
            lines[0].starts_with(&format!("{JAIL}\t{}\t", self.a.v4)),
            "{when}: {banned}"
        );
        let listing = self.host.sh("iptables", &["-w", "-S"]);
        assert_docker_user_ban_verdict(&listing, &self.prefix, JAIL, &self.set, rule_end);
        assert!(
            !logjail.log().contains("not restored"),
            "{when}: {}",
            logjail.log()
        );
    }
}

/// The jail chain's verdict, and what a banned client meets.
type Verdict = (&'static str, fn(Reach) -> bool);
const DROPPED: Verdict = ("-j DROP", |reach| reach == Reach::TimedOut);
const REJECTED: Verdict = ("-j REJECT --reject-with icmp-port-unreachable", |reach| {
    reach.refused_fast()
});

#[test]
fn a_label_defined_jail_keeps_its_ban_across_restarts_relabelling_and_removal() {
    // Dropped last: the engine's child process belongs to it.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let host = Netns::new("ljl");
    let a = Client::linked_to(&host, "ljla", 1);
    let b = Client::linked_to(&host, "ljlb", 2);
    let engine = runtime.block_on(PrivateDockerd::start_in_netns(&host.name, &[]));
    runtime.block_on(engine.import_busybox(IMAGE));
    let prefix = unique("ljl");
    let lab = Lab {
        set: format!("{prefix}-s-{JAIL}-4"),
        host,
        a,
        b,
        engine,
        prefix,
    };
    let shop = unique("ljshop");
    let mut containers = Containers::on_host(&lab.engine.host);
    runtime.block_on(run_shop(&mut containers, &shop, "drop"));
    wait_until(
        "the container to serve B",
        || tail(&lab.engine.log()),
        || lab.b.reach(Family::V4) == Reach::Connected,
    );

    let dir = tempfile::Builder::new()
        .prefix("ljl")
        .tempdir_in("/tmp")
        .unwrap();
    let config_path = dir.path().join("logjail.yaml");
    std::fs::write(
        &config_path,
        config(dir.path(), &lab.engine.host, &lab.prefix),
    )
    .unwrap();
    let mut logjail = LogjailRun::new(&config_path).netns(&lab.host.name).start();
    wait_until(
        "the container to be watched",
        || lab.context(&logjail),
        || logjail.log().contains("watching container"),
    );

    // Three 404s from A: the labels' jail bans it.
    for _ in 0..3 {
        let answer = lab.a.get(Family::V4, "/missing");
        assert!(
            answer.lines().next().unwrap_or_default().contains(" 404 "),
            "{answer}"
        );
    }
    lab.assert_banned_once(&logjail, "banned from the labels' jail", DROPPED);

    // A crash: the kernel keeps the chains and the set; the new start adopts them.
    logjail.kill();
    let mut logjail = LogjailRun::new(&config_path).netns(&lab.host.name).start();
    lab.assert_banned_once(&logjail, "after kill -9", DROPPED);
    assert!(
        logjail
            .log()
            .contains("label-defined jail restored from the store"),
        "{}",
        logjail.log()
    );

    // A clean stop takes everything out of the kernel; the start puts the ban back from the
    // store, before the container is looked at.
    assert!(logjail.stop().success(), "{}", logjail.log());
    assert!(
        !lab.host.sh("iptables", &["-w", "-S"]).contains(&lab.prefix),
        "a clean stop removes logjail's rules"
    );
    assert_eq!(
        lab.a.reach(Family::V4),
        Reach::Connected,
        "A free while logjail is down"
    );
    let mut logjail = LogjailRun::new(&config_path).netns(&lab.host.name).start();
    lab.assert_banned_once(&logjail, "after a clean restart", DROPPED);
    let log = logjail.log();
    let reapplied = log
        .find("bans re-applied to the firewall")
        .expect("the ban re-applied at start");
    let watching = log.find("watching container").unwrap_or(usize::MAX);
    assert!(
        reapplied < watching,
        "the ban is back before the container's lines are read:\n{log}"
    );

    // While logjail is down, the container is re-created with another verdict: the new
    // labels win and the ban follows them (a refusal instead of silence).
    assert!(logjail.stop().success(), "{}", logjail.log());
    docker(&lab.engine.host, &["rm", "-f", &shop]);
    runtime.block_on(run_shop(&mut containers, &shop, "reject"));
    let mut logjail = LogjailRun::new(&config_path).netns(&lab.host.name).start();
    wait_until(
        "the jail to take the new labels",
        || lab.context(&logjail),
        || {
            logjail
                .log()
                .contains("jail redefined by changed container labels")
        },
    );
    wait_until(
        "A to be refused at once",
        || lab.context(&logjail),
        || lab.a.reach(Family::V4).refused_fast(),
    );
    lab.assert_banned_once(&logjail, "after the labels changed", REJECTED);
    let listing = lab.host.sh("iptables", &["-w", "-S"]);
    assert!(
        !listing
            .lines()
            .any(|rule| rule.contains(&lab.set) && rule.ends_with("-j DROP")),
        "the old verdict is gone:\n{listing}"
    );

    // The container is gone for good: the ban is the attacker's, not the container's. It
    // stays, is listed, and can be lifted.
    assert!(logjail.stop().success(), "{}", logjail.log());
    docker(&lab.engine.host, &["rm", "-f", &shop]);
    let mut logjail = LogjailRun::new(&config_path).netns(&lab.host.name).start();
    wait_until(
        &format!("A in {} without its container", lab.set),
        || lab.context(&logjail),
        || set_holds(&lab.host, &lab.set, lab.a.v4),
    );
    assert_eq!(set_entries(&lab.host, &lab.set).len(), 1);
    let status = logjail.must(&["status", JAIL]);
    assert!(status.contains(&lab.a.v4.to_string()), "{status}");
    assert!(
        status.contains(&format!("labels of container {shop} (restored; not seen")),
        "{status}"
    );
    let listed = logjail.must(&["banned", &lab.a.v4.to_string()]);
    assert!(
        listed.starts_with(&format!("{JAIL}\t{}", lab.a.v4)),
        "{listed}"
    );
    logjail.must(&["unban", JAIL, &lab.a.v4.to_string()]);
    assert!(!set_holds(&lab.host, &lab.set, lab.a.v4));
    assert_eq!(logjail.must(&["banned"]), "");
    assert!(logjail.stop().success(), "{}", logjail.log());

    // Nothing is left to restore: the next start has no jail and no rule of logjail's.
    let mut logjail = LogjailRun::new(&config_path).netns(&lab.host.name).start();
    let status = logjail.must(&["status"]);
    assert!(!status.contains(JAIL), "{status}");
    assert!(logjail.stop().success(), "{}", logjail.log());
    assert!(!lab.host.sh("iptables", &["-w", "-S"]).contains(&lab.prefix));
    drop(containers);
}
