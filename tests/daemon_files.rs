//! The daemon end to end on host files: real files followed with inotify, real SQLite, the
//! real tasks. Lines in, ban decisions out; a restart neither double counts nor misses lines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use logjail::config::Config;
use logjail::jail::Decision;
use logjail::messages::DaemonEvent;
use support::TestDaemon;

const WAIT: Duration = Duration::from_secs(10);

fn config(dir: &Path, maxretry: u32) -> Config {
    let text = format!(
        r#"
store:
  path: {dir}/state.db
control:
  socket: {dir}/logjail.sock
docker:
  enabled: false
metrics:
  enabled: false
filters:
  app:
    failregex:
      - '^login failed for \S+ from <HOST>$'
jails:
  app:
    filter: app
    maxretry: {maxretry}
    findtime: 1h
    bantime: 1h
    sources:
      - file: {dir}/app.log
  ssh:
    filter: sshd
    maxretry: 2
    sources:
      - file: {dir}/auth.log
"#,
        dir = dir.display()
    );
    support::config_from_yaml(&text)
}

fn start(config: Config) -> TestDaemon {
    TestDaemon::builder(config).patience(WAIT).start()
}

fn append(path: &Path, lines: &[String]) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
}

fn failed(host: &str) -> String {
    format!("login failed for bob from {host}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_in_a_file_lead_to_a_ban() {
    let dir = tempfile::tempdir().unwrap();
    // Lines already in the file when logjail first starts count too (their own time decides
    // whether they are recent enough), as with Fail2Ban.
    append(&dir.path().join("app.log"), &[failed("192.0.2.1")]);
    let mut running = start(config(dir.path(), 3));
    append(
        &dir.path().join("app.log"),
        &[
            failed("192.0.2.2"),
            failed("192.0.2.1"),
            failed("192.0.2.1"),
        ],
    );
    let event = running.next_ban().await;
    let DaemonEvent::Banned { order, origin } = event else {
        unreachable!()
    };
    assert_eq!(order.host, "192.0.2.1".parse::<IpAddr>().unwrap());
    assert_eq!(order.jail, "app");
    assert_eq!(order.failures, 3);
    assert_eq!(order.matches.len(), 3);
    assert!(origin.unwrap().to_string().ends_with("app.log"));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builtin_filter_reads_syslog_lines() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("auth.log"), &[]);
    let mut running = start(config(dir.path(), 3));
    // Stamped now: the jail drops failures older than findtime by their own time.
    let stamp = chrono::Local::now().format("%b %e %H:%M:%S");
    let line = |host: &str| {
        format!(
            "{stamp} web sshd[7]: Failed password for invalid user admin from 6.6.6.6 port 22 ssh2 from {host} port 4000 ssh2"
        )
    };
    append(
        &dir.path().join("auth.log"),
        &[line("198.51.100.9"), line("198.51.100.9")],
    );
    let DaemonEvent::Banned { order, .. } = running.next_ban().await else {
        unreachable!()
    };
    // The address in the attacker-chosen user name never counts.
    assert_eq!(order.host, "198.51.100.9".parse::<IpAddr>().unwrap());
    assert_eq!(order.jail, "ssh");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_without_double_counting_or_missing_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &[]);

    // First run: two failures of A (maxretry 3: no ban yet), one of B.
    let mut running = start(config(dir.path(), 3));
    append(
        &log,
        &[
            failed("192.0.2.10"),
            failed("192.0.2.10"),
            failed("192.0.2.11"),
        ],
    );
    let seen = running.failures(3).await;
    assert!(
        seen.iter()
            .all(|(_, d)| matches!(d, Decision::Counted { .. }))
    );
    running.stop().await;

    // Written while logjail was down: must be read after the restart, exactly once.
    append(&log, &[failed("192.0.2.11"), failed("192.0.2.11")]);

    let mut running = start(config(dir.path(), 3));
    // The two lines of B written while down are read; the old lines are not read again (if
    // they were, A would reach 3 and B would be banned at its first new line).
    let seen = running.failures(2).await;
    let host_b: IpAddr = "192.0.2.11".parse().unwrap();
    assert_eq!(
        seen[0],
        (
            host_b,
            Decision::Counted {
                failures: 1,
                maxretry: 3
            }
        )
    );
    assert_eq!(
        seen[1],
        (
            host_b,
            Decision::Counted {
                failures: 2,
                maxretry: 3
            }
        )
    );
    append(&log, &[failed("192.0.2.11")]);
    let DaemonEvent::Banned { order, .. } = running.next_ban().await else {
        unreachable!()
    };
    assert_eq!(order.host, host_b);
    running.stop().await;

    // Third run: the ban is restored from the store; more failures of B are not counted.
    let mut running = start(config(dir.path(), 3));
    append(&log, &[failed("192.0.2.11")]);
    let seen = running.failures(1).await;
    assert!(
        matches!(seen[0].1, Decision::AlreadyBanned { until: Some(_) }),
        "{seen:?}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_file_is_followed_into_its_successor() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &[]);
    let mut running = start(config(dir.path(), 3));
    append(&log, &[failed("203.0.113.5"), failed("203.0.113.5")]);
    running.failures(2).await;
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&log, &[failed("203.0.113.5")]);
    let DaemonEvent::Banned { order, .. } = running.next_ban().await else {
        unreachable!()
    };
    assert_eq!(order.host, "203.0.113.5".parse::<IpAddr>().unwrap());
    running.stop().await;
}

/// The `app` jail's figures through the control socket, as `logjail status app` gets them.
async fn jail_status(socket: &Path) -> serde_json::Value {
    let socket = socket.to_path_buf();
    let request = logjail::control::protocol::Request::Status {
        jail: Some("app".to_string()),
    };
    tokio::task::spawn_blocking(move || logjail::control::client::call(&socket, request))
        .await
        .unwrap()
        .ok()
        .and_then(|response| response.result)
        .unwrap_or_default()
}

/// 200,000 one-off addresses fill the jail to its cap of tracked one-failure hosts (100,000),
/// which pushes out 100,000 of them. An attacker's 10 failures spread through the flood, 20,000
/// new addresses apart, keep their count: the flood only churns the probation tier, so the
/// attacker is banned at exactly maxretry (5), with all five lines as evidence in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_hidden_in_a_flood_of_one_off_addresses_is_banned() {
    const FLOOD: u32 = 200_000;
    const ATTACKER: &str = "203.0.113.66";
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &[]);
    let running = start(config(dir.path(), 5));
    let socket = dir.path().join("logjail.sock");
    let started = std::time::Instant::now();
    while jail_status(&socket).await.get("name").is_none() {
        assert!(started.elapsed() < WAIT, "control socket up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lines = Vec::with_capacity(FLOOD as usize + 10);
    for i in 0..FLOOD {
        lines.push(failed(
            &std::net::Ipv4Addr::from(0x6440_0000 + i).to_string(),
        ));
        if i % 20_000 == 10_000 {
            lines.push(failed(ATTACKER));
        }
    }
    append(&log, &lines);
    // Every flood line is counted once; the attacker's are counted until its ban.
    let counted = u64::from(FLOOD) + 5;
    let status = loop {
        let status = jail_status(&socket).await;
        if status["total_failed"].as_u64().unwrap_or(0) >= counted {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "flood processed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status["total_failed"].as_u64(), Some(counted), "{status}");
    assert_eq!(status["banned"], serde_json::json!([ATTACKER]), "{status}");
    assert_eq!(
        status["currently_failed"].as_u64(),
        Some(100_000),
        "the cap was reached: {status}"
    );
    running.stop().await;
    let store = logjail::store::Store::open(&dir.path().join("state.db")).unwrap();
    let bans = store.active_bans(chrono::Utc::now()).unwrap();
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].host, ATTACKER.parse::<IpAddr>().unwrap());
    assert_eq!(bans[0].failures, 5);
    assert_eq!(bans[0].matches, vec![failed(ATTACKER); 5]);
}
