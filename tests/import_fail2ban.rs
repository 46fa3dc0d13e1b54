//! `logjail import-fail2ban` on realistic Fail2Ban folders (Debian's `/etc/fail2ban` with
//! local changes laid over it, `tests/fixtures/fail2ban/`): the YAML passes `logjail check`,
//! the report names every setting with its file and line, the imported jail bans what
//! Fail2Ban would on the same log (the real fail2ban-regex's matches run through the jail's
//! maxretry, findtime, bantime, increments and ignoreip), and the blacklist's addresses become
//! bans once through a real daemon.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use logjail::config::{
    Chain, Config, FirewallAction, PortRange, Ports, Protocol, RejectWith, SourceConfig,
};
use logjail::duration::BanTime;
use support::TestDaemon;
use support::fail2ban::{debian_tree, linked, run};
use support::process::BINARY;

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `logjail import-fail2ban TREE -o DIR/logjail.yaml --report DIR/report.txt`.
fn import(tree: &Path, dir: &Path) -> (Output, String, String) {
    let output = Command::new(BINARY)
        .arg("import-fail2ban")
        .arg(tree)
        .arg("-o")
        .arg(dir.join("logjail.yaml"))
        .arg("--report")
        .arg(dir.join("report.txt"))
        .output()
        .unwrap();
    let yaml = std::fs::read_to_string(dir.join("logjail.yaml")).unwrap_or_default();
    let report = std::fs::read_to_string(dir.join("report.txt")).unwrap_or_default();
    (output, yaml, report)
}

/// The report's lines under one heading (`Mapped`, `Mapped approximately`, `Not mapped`).
fn section<'a>(report: &'a str, heading: &str) -> Vec<&'a str> {
    let mut lines = report
        .lines()
        .skip_while(|line| !line.starts_with(&format!("{heading} (")));
    lines.next();
    lines.take_while(|line| line.starts_with("  ")).collect()
}

fn has(lines: &[&str], parts: &[&str]) -> bool {
    lines
        .iter()
        .any(|line| parts.iter().all(|part| line.contains(part)))
}

#[test]
fn debians_tree_with_local_jails_imports_to_a_configuration_that_checks() {
    let dir = tempfile::tempdir().unwrap();
    let tree = debian_tree(dir.path(), "debian-local");
    let (output, yaml, report) = import(&tree, dir.path());
    assert!(output.status.success(), "{:?}\n{report}", text(&output));

    let checked = Command::new(BINARY)
        .args(["check", "-c"])
        .arg(dir.path().join("logjail.yaml"))
        .output()
        .unwrap();
    assert!(checked.status.success(), "{:?}\n{yaml}", text(&checked));

    let config = Config::load(&dir.path().join("logjail.yaml")).unwrap();
    let names: Vec<&str> = config.jails.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["sshd", "asterisk", "blacklist"], "{yaml}");

    // Every jail here has a filter logjail has built in, and Debian's files are unchanged:
    // the built-in filters run (the honest part of "passes check" before filter files are read).
    let sshd = config.jail("sshd").unwrap();
    assert_eq!(sshd.filter.as_deref(), Some("sshd"));
    assert_eq!(sshd.maxretry, 4);
    assert_eq!(sshd.findtime, Duration::from_secs(900));
    assert_eq!(sshd.bantime, BanTime::Finite(Duration::from_secs(7200)));
    assert_eq!(
        sshd.ports,
        Ports::List(vec![PortRange {
            first: 22,
            last: 22
        }])
    );
    assert_eq!(sshd.protocol, Protocol::Tcp);
    assert_eq!(sshd.chains, [Chain::Input]);
    // iptables' default blocktype: REJECT --reject-with icmp-port-unreachable.
    assert_eq!(
        sshd.action.firewall,
        FirewallAction::Reject(RejectWith::IcmpPortUnreachable)
    );
    let ignored: Vec<String> = sshd.ignoreip.iter().map(ToString::to_string).collect();
    assert_eq!(ignored, ["127.0.0.0/8", "::1/128", "192.168.9.0/24"]);
    let increment = sshd.increment.as_ref().expect("bantime.increment = true");
    assert_eq!(increment.maxtime, Some(Duration::from_secs(5 * 7 * 86_400)));
    match &sshd.sources[..] {
        [
            SourceConfig::File {
                path,
                optional: true,
            },
        ] => {
            assert_eq!(path.as_str(), "/var/log/auth.log")
        }
        other => panic!("{other:?}"),
    }

    let asterisk = config.jail("asterisk").unwrap();
    assert_eq!(asterisk.filter.as_deref(), Some("asterisk"));
    assert_eq!(asterisk.maxretry, 5);
    assert_eq!(
        asterisk.bantime,
        BanTime::Finite(Duration::from_secs(259_200))
    );
    match &asterisk.sources[..] {
        [SourceConfig::File { path, .. }] => {
            assert_eq!(path.as_str(), "/var/log/asterisk/fail2ban")
        }
        other => panic!("{other:?}"),
    }
    // jail.conf's asterisk bans tcp and udp with two actions; logjail's one jail does both.
    assert_eq!(asterisk.protocol, Protocol::All);
    assert_eq!(
        asterisk.ports,
        Ports::List(vec![
            PortRange {
                first: 5060,
                last: 5060
            },
            PortRange {
                first: 5061,
                last: 5061
            }
        ])
    );

    let blacklist = config.jail("blacklist").unwrap();
    assert_eq!(blacklist.filter.as_deref(), Some("recidive"));
    assert_eq!(
        blacklist.bantime,
        BanTime::Finite(Duration::from_secs(2_592_000))
    );
    assert_eq!(blacklist.findtime, Duration::from_secs(2_592_000));
    assert_eq!(blacklist.action.firewall, FirewallAction::Drop);
    assert_eq!(blacklist.ports, Ports::All);

    // The report: each line has the file and line the setting was read from.
    let mapped = section(&report, "Mapped");
    let approximate = section(&report, "Mapped approximately");
    let not_mapped = section(&report, "Not mapped");
    let local = tree.join("jail.local").display().to_string();
    assert!(
        has(
            &mapped,
            &[
                &format!("{local}:13:"),
                "[sshd] bantime = 7200",
                "bantime: 2h"
            ]
        ),
        "{report}"
    );
    assert!(
        has(&mapped, &[&format!("{local}:14:"), "[sshd] findtime = 900"]),
        "{report}"
    );
    assert!(
        has(
            &mapped,
            &[
                &format!("{local}:4:"),
                "[DEFAULT] ignoreip = 127.0.0.1/8 ::1 192.168.9.0/24"
            ]
        ),
        "{report}"
    );
    assert!(
        has(
            &mapped,
            &[
                "jail.d/blacklist.local:7:",
                "bantime = 2592000",
                "bantime: 30d"
            ]
        ),
        "{report}"
    );
    assert!(
        has(
            &mapped,
            &[
                "action.d/iptables.conf:",
                "blocktype = REJECT --reject-with icmp-port-unreachable"
            ]
        ),
        "{report}"
    );
    assert!(
        has(
            &mapped,
            &[
                "action.d/blacklist.conf:",
                "blocktype = DROP",
                "action: drop"
            ]
        ),
        "{report}"
    );
    assert!(
        has(
            &approximate,
            &["[sshd] filter = sshd[mode=normal]", "built-in"]
        ),
        "{report}"
    );
    assert!(
        has(
            &approximate,
            &["jail.conf:", "usedns = warn", "never resolves"]
        ),
        "{report}"
    );
    // The custom notification action is named, never run, and has a ready notification.
    assert!(
        has(
            &not_mapped,
            &[
                "action.d/notify-admin.conf:3:",
                r#"command: {argv: ["/usr/local/bin/notify-admin", "<ip>", "sshd", "<failures>"], on: [ban]}"#
            ]
        ),
        "{report}"
    );
    assert!(
        has(&not_mapped, &["sendmail-whois-lines", "mail on ban"]),
        "{report}"
    );
    assert!(
        has(
            &not_mapped,
            &["action.d/iptables-common.local:3:", "lockingopt = -w", "-w"]
        ),
        "{report}"
    );
    assert!(
        has(
            &not_mapped,
            &[
                "fail2ban.conf:",
                "logtarget = /var/log/fail2ban.log",
                "standard error"
            ]
        ),
        "{report}"
    );
    assert!(
        has(
            &not_mapped,
            &[
                "blacklist.conf:",
                "echo <ip> >> /etc/fail2ban/ip.blacklist",
                "imported once"
            ]
        ),
        "{report}"
    );
    assert!(
        report.contains("The generated configuration passes `logjail check`."),
        "{report}"
    );
    assert!(
        report.contains("4 addresses in")
            && report.contains("1 repeated line(s)")
            && report.contains("not-an-address"),
        "{report}"
    );

    // The blacklist's addresses, for `logjail import-bans`, next to the YAML.
    let bans = std::fs::read_to_string(dir.path().join("logjail.bans")).unwrap();
    let listed: Vec<String> = bans
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        listed,
        [
            "blacklist 203.0.113.7",
            "blacklist 198.51.100.23",
            "blacklist 2001:db8:bad::1",
            "blacklist 192.0.2.200"
        ]
    );
}

/// One sshd failure line as Debian 12's rsyslog writes it.
fn sshd_line(seconds: i64, host: &str, n: usize) -> String {
    let time = chrono::DateTime::from_timestamp(1_767_225_600 + seconds, 0).unwrap();
    let stamp = time.format("%Y-%m-%dT%H:%M:%S%.6f+00:00");
    if n.is_multiple_of(2) {
        format!(
            "{stamp} web1 sshd[{}]: Failed password for root from {host} port {} ssh2",
            4000 + n,
            40000 + n
        )
    } else {
        format!(
            "{stamp} web1 sshd[{}]: Invalid user admin{n} from {host} port {}",
            4000 + n,
            40000 + n
        )
    }
}

/// Fail2Ban's decision on a list of failures (address, time): within findtime, maxretry
/// failures ban; a ban lasts bantime × 2^(earlier bans), at most maxtime; ignoreip is never
/// banned; failures while banned are not counted (the log has none).
fn fail2ban_bans(
    failures: &[(IpAddr, i64)],
    maxretry: usize,
    findtime: i64,
    bantime: i64,
    maxtime: i64,
    ignored: impl Fn(IpAddr) -> bool,
) -> Vec<(IpAddr, i64, i64)> {
    let mut windows: BTreeMap<IpAddr, Vec<i64>> = BTreeMap::new();
    let mut banned_until: BTreeMap<IpAddr, i64> = BTreeMap::new();
    let mut ban_counts: BTreeMap<IpAddr, u32> = BTreeMap::new();
    let mut bans = Vec::new();
    for &(ip, time) in failures {
        if ignored(ip) || banned_until.get(&ip).is_some_and(|until| *until > time) {
            continue;
        }
        let window = windows.entry(ip).or_default();
        window.retain(|t| *t > time - findtime);
        window.push(time);
        if window.len() >= maxretry {
            let count = ban_counts.entry(ip).or_default();
            let length = (bantime << *count).min(maxtime);
            *count += 1;
            bans.push((ip, time, length));
            banned_until.insert(ip, time + length);
            window.clear();
        }
    }
    bans
}

#[test]
fn the_imported_sshd_jail_bans_what_fail2ban_would_on_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let tree = debian_tree(dir.path(), "debian-local");
    let (output, _, report) = import(&tree, dir.path());
    assert!(output.status.success(), "{report}");

    // Attackers of every kind: fast (banned), too slow for findtime, ignored by ignoreip,
    // below maxretry, IPv6, and one that comes back after its ban for a longer second ban.
    let mut events: Vec<(i64, &str)> = Vec::new();
    for t in [0, 60, 120, 180, 240] {
        events.push((t, "203.0.113.10"));
    }
    for t in [0, 360, 720, 1080, 1440] {
        events.push((t + 30, "203.0.113.11"));
    }
    for t in 0..6 {
        events.push((300 + t * 10, "192.168.9.7"));
    }
    for t in [500, 520, 540] {
        events.push((t, "198.51.100.20"));
    }
    for t in [1000, 1010, 1020, 1030] {
        events.push((t, "2001:db8::66"));
    }
    for t in [2000, 2030, 2060, 2090, 12_000, 12_030, 12_060, 12_090] {
        events.push((t, "203.0.113.12"));
    }
    events.sort();
    let mut log = String::new();
    for (n, (t, host)) in events.iter().enumerate() {
        log.push_str(&sshd_line(*t, host, n));
        log.push('\n');
        if n.is_multiple_of(3) {
            log.push_str(&format!(
                "{} web1 sshd[99]: Server listening on 0.0.0.0 port 22.\n",
                chrono::DateTime::from_timestamp(1_767_225_600 + t, 0)
                    .unwrap()
                    .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
            ));
        }
    }
    let log_path = dir.path().join("auth.log");
    std::fs::write(&log_path, &log).unwrap();

    // Fail2Ban's own filter, from the imported tree, on the same log.
    let matched = Command::new("fail2ban-regex")
        .arg("-c")
        .arg(&tree)
        .args(["-o", "<ip> <time>"])
        .arg(&log_path)
        .arg("sshd")
        .output()
        .expect("fail2ban-regex runs (Debian's fail2ban package)");
    assert!(matched.status.success(), "{:?}", text(&matched));
    let failures: Vec<(IpAddr, i64)> = String::from_utf8_lossy(&matched.stdout)
        .lines()
        .map(|line| {
            let (ip, time) = line.split_once(' ').unwrap();
            (ip.parse().unwrap(), time.parse::<f64>().unwrap() as i64)
        })
        .collect();
    assert_eq!(
        failures.len(),
        events.len(),
        "fail2ban-regex sees every failure"
    );

    let config = Config::load(&dir.path().join("logjail.yaml")).unwrap();
    let sshd = config.jail("sshd").unwrap();
    let settings = sshd.jail_settings(&[]).unwrap();
    let expected = fail2ban_bans(
        &failures,
        sshd.maxretry as usize,
        sshd.findtime.as_secs() as i64,
        sshd.bantime.finite().unwrap().as_secs() as i64,
        sshd.increment.as_ref().unwrap().maxtime.unwrap().as_secs() as i64,
        |ip| {
            settings
                .ignore
                .networks()
                .iter()
                .any(|net| net.contains(&ip))
        },
    );
    assert_eq!(expected.len(), 4, "{expected:?}");

    let replay = Command::new(BINARY)
        .arg("regex")
        .arg(&log_path)
        .arg(sshd.filter.as_deref().unwrap())
        .args(["--bans", "--json", "--jail", "sshd", "-c"])
        .arg(dir.path().join("logjail.yaml"))
        .output()
        .unwrap();
    assert!(replay.status.success(), "{:?}", text(&replay));
    let logjail: Vec<(IpAddr, i64, i64)> = String::from_utf8_lossy(&replay.stdout)
        .lines()
        .map(|line| {
            let ban: serde_json::Value = serde_json::from_str(line).unwrap();
            let time = chrono::DateTime::parse_from_rfc3339(ban["time"].as_str().unwrap()).unwrap();
            (
                ban["host"].as_str().unwrap().parse().unwrap(),
                time.timestamp(),
                ban["bantime"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(logjail, expected);
    // The second ban of the returning attacker is twice as long (bantime.increment).
    assert!(logjail.contains(&(
        "203.0.113.12".parse().unwrap(),
        1_767_225_600 + 12_090,
        14_400
    )));
}

#[test]
fn filters_logjail_does_not_have_stay_fail2ban_files() {
    let dir = tempfile::tempdir().unwrap();
    let tree = debian_tree(dir.path(), "custom");
    let (output, yaml, report) = import(&tree, dir.path());
    let value: serde_yaml::Value =
        serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let jails = &value["jails"];
    let file = |name: &str| tree.join("filter.d").join(name).display().to_string();

    // The stock sshd jail keeps the built-in filter; the changed asterisk filter, the
    // WordPress filter logjail has no stock file for, and sshd's aggressive mode keep Fail2Ban's
    // files, in the shape the filter-file reader takes.
    assert_eq!(jails["sshd"]["filter"].as_str(), Some("sshd"));
    assert_eq!(
        jails["asterisk"]["filter"]["fail2ban"].as_str(),
        Some(file("asterisk.conf").as_str())
    );
    assert_eq!(jails["asterisk"]["filter"]["mode"].as_str(), Some("normal"));
    assert_eq!(
        jails["wordpress"]["filter"]["fail2ban"].as_str(),
        Some(file("wordpress.conf").as_str())
    );
    assert_eq!(
        jails["sshd-journal"]["filter"]["fail2ban"].as_str(),
        Some(file("sshd.conf").as_str())
    );
    assert_eq!(
        jails["sshd-journal"]["filter"]["mode"].as_str(),
        Some("aggressive")
    );

    // Docker's json-file logs become a container source; DOCKER-USER and tcp-reset carry over.
    let wordpress = &jails["wordpress"];
    assert_eq!(
        wordpress["sources"][0]["container"]["name"].as_str(),
        Some("*")
    );
    assert_eq!(wordpress["chains"][0].as_str(), Some("docker-user"));
    assert_eq!(wordpress["action"].as_str(), Some("reject-with tcp-reset"));
    assert_eq!(wordpress["protocol"].as_str(), Some("tcp"));
    assert_eq!(wordpress["ports"][0].as_str(), Some("http"));
    assert_eq!(wordpress["maxretry"].as_u64(), Some(6));

    // backend = systemd: one journal source per `+` alternative of sshd.conf's journalmatch.
    let journal = &jails["sshd-journal"]["sources"];
    assert_eq!(journal[0]["journal"]["unit"].as_str(), Some("sshd.service"));
    assert_eq!(
        journal[1]["journal"]["match"][0].as_str(),
        Some("_COMM=sshd")
    );

    let not_mapped = section(&report, "Not mapped");
    assert!(
        has(
            &not_mapped,
            &[
                "action.d/abuse-report.conf:3:",
                "curl -s",
                "put it in a script"
            ]
        ),
        "{report}"
    );
    assert!(
        has(
            &not_mapped,
            &["jail.local:7:", "bantime.formula", "no Python formula"]
        ),
        "{report}"
    );
    // ipset bans on every port, with the stock nginx-http-auth filter built in.
    let nginx = &jails["nginx-http-auth"];
    assert_eq!(nginx["filter"].as_str(), Some("nginx-http-auth"));
    assert_eq!(nginx["ports"].as_str(), Some("all"));
    assert_eq!(
        nginx["action"].as_str(),
        Some("reject-with icmp-port-unreachable")
    );
    assert_eq!(wordpress["ignoreself"].as_bool(), Some(false));
    let increment = &value["defaults"]["increment"];
    assert_eq!(increment["enabled"].as_bool(), Some(true));
    let multipliers: Vec<u64> = increment["multipliers"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m.as_u64().unwrap())
        .collect();
    assert_eq!(multipliers, [1, 5, 30, 60]);
    let mapped = section(&report, "Mapped");
    assert!(
        has(
            &mapped,
            &[
                "[asterisk] filter = asterisk[mode=normal]",
                "asterisk.local changes it"
            ]
        ),
        "{report}"
    );

    // logjail reads Fail2Ban filter files, so the whole import passes `check`.
    assert!(output.status.success(), "{report}");
    let checked = Command::new(BINARY)
        .args(["check", "-c"])
        .arg(dir.path().join("logjail.yaml"))
        .output()
        .unwrap();
    assert!(checked.status.success(), "{checked:?}");

    // A real Asterisk line through the edited asterisk.conf (with its asterisk.local, whose
    // extra failregex is listed) finds the host, as fail2ban-regex does on the same file.
    let log = dir.path().join("asterisk.log");
    std::fs::write(
        &log,
        "[2026-11-26 07:00:01] NOTICE[1234] chan_sip.c: Registration from '<sip:100@10.0.0.1>' \
         failed for '198.51.100.23:5060' - Wrong password\n",
    )
    .unwrap();
    let regex = Command::new(BINARY)
        .arg("regex")
        .arg("--json")
        .arg(&log)
        .arg(format!("{}[mode=normal]", file("asterisk.conf")))
        .output()
        .unwrap();
    assert!(regex.status.success(), "{regex:?}");
    let (found, _) = text(&regex);
    let first: serde_json::Value = serde_json::from_str(found.lines().next().unwrap()).unwrap();
    assert_eq!(first["host"].as_str(), Some("198.51.100.23"), "{found}");
    let listed = Command::new(BINARY)
        .arg("regex")
        .arg(&log)
        .arg(file("asterisk.conf"))
        .output()
        .unwrap();
    let (summary, _) = text(&listed);
    assert!(
        summary.contains("Unknown extension call from <HOST>$"),
        "{summary}"
    );
}

#[test]
fn a_file_fail2ban_refuses_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let tree = debian_tree(dir.path(), "debian-local");
    std::fs::write(
        tree.join("jail.d/broken.local"),
        "[sshd]\nmaxretry = 3\nMaxRetry = 4\n",
    )
    .unwrap();
    let (output, _, _) = import(&tree, dir.path());
    assert_eq!(output.status.code(), Some(1));
    let (_, stderr) = text(&output);
    assert!(
        stderr.contains("jail.d/broken.local:3:") && stderr.contains("maxretry"),
        "{stderr}"
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (output, _, _) = import(&empty, dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).1.contains("no Fail2Ban configuration here"));
}

/// The imported configuration with its file sources moved into `dir` (the test must not read
/// the host's logs) and the daemon's state there too.
fn runnable(yaml: &str, dir: &Path) -> Config {
    let moved = yaml.replace("file: /var/log/", &format!("file: {}/", dir.display()));
    support::config_with_store(&format!("{moved}\ndocker: {{enabled: false}}\n"), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blacklists_addresses_become_bans_once() {
    let dir = tempfile::tempdir().unwrap();
    let tree = debian_tree(dir.path(), "debian-local");
    let (output, yaml, report) = import(&tree, dir.path());
    assert!(output.status.success(), "{report}");
    let daemon = TestDaemon::builder(runnable(&yaml, dir.path())).start();
    daemon.wait_for_socket().await;
    let socket = daemon.socket().to_path_buf();
    let bans: PathBuf = dir.path().join("logjail.bans");
    let import_bans = |file: PathBuf| {
        let socket = socket.clone();
        async move {
            tokio::process::Command::new(BINARY)
                .arg("--socket")
                .arg(&socket)
                .arg("import-bans")
                .arg(&file)
                .output()
                .await
                .unwrap()
        }
    };

    let first = import_bans(bans.clone()).await;
    assert!(first.status.success(), "{:?}", text(&first));
    assert_eq!(
        text(&first).0,
        "import-bans: 4 banned, 0 already banned, 0 refused\n"
    );

    // As Fail2Ban users look at it.
    let client = linked(dir.path(), "fail2ban-client");
    let socket_arg = socket.display().to_string();
    let status = tokio::task::spawn_blocking(move || {
        run(&client, &["-s", &socket_arg, "status", "blacklist"])
    })
    .await
    .unwrap();
    let (stdout, _) = text(&status);
    assert!(stdout.contains("   |- Currently banned:\t4\n"), "{stdout}");
    for ip in [
        "203.0.113.7",
        "198.51.100.23",
        "2001:db8:bad::1",
        "192.0.2.200",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("   `- Banned IP list:\t") && l.contains(ip)),
            "{stdout}"
        );
    }
    // With the jail's bantime (30 days).
    let listed = daemon.cli(&["--json", "banned", "203.0.113.7"]).await;
    let views: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let start = chrono::DateTime::parse_from_rfc3339(views[0]["start"].as_str().unwrap()).unwrap();
    let end = chrono::DateTime::parse_from_rfc3339(views[0]["end"].as_str().unwrap()).unwrap();
    assert_eq!((end - start).num_seconds(), 2_592_000);

    // Once: applying the file again changes nothing.
    let again = import_bans(bans.clone()).await;
    assert!(again.status.success());
    assert_eq!(
        text(&again).0,
        "import-bans: 0 banned, 4 already banned, 0 refused\n"
    );

    // An address the jail ignores is refused, named, and the exit code says so.
    let ignored = dir.path().join("ignored.bans");
    std::fs::write(&ignored, "blacklist 192.168.9.9\nblacklist 203.0.113.8\n").unwrap();
    let refused = import_bans(ignored).await;
    assert_eq!(refused.status.code(), Some(1));
    let (stdout, stderr) = text(&refused);
    assert_eq!(
        stdout,
        "import-bans: 1 banned, 0 already banned, 1 refused\n"
    );
    assert!(
        stderr.contains("192.168.9.9") && stderr.contains("ignoreip"),
        "{stderr}"
    );
    daemon.stop().await;
}
