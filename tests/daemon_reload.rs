//! Reload: a changed configuration applies without losing bans, failure counts of unchanged
//! jails or read positions; a broken one is refused with every error and changes nothing.
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
use support::process::cli_async as cli;

fn write_config(dir: &Path, app_maxretry: u32, with_extra_jail: bool) {
    let extra = if with_extra_jail {
        "  extra:\n    manual: true\n"
    } else {
        ""
    };
    let text = format!(
        r#"
store: {{path: {dir}/state.db}}
control: {{socket: {dir}/logjail.sock}}
docker: {{enabled: false}}
metrics: {{enabled: false}}
filters:
  app:
    failregex: ['^login failed from <HOST>$']
jails:
  app:
    maxretry: {app_maxretry}
    findtime: 1h
    sources:
      - file: {dir}/app.log
  blacklist:
    manual: true
{extra}"#,
        dir = dir.display()
    );
    std::fs::write(dir.join("logjail.yaml"), text).unwrap();
}

fn append(path: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(file, "{line}").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_state_and_refuses_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("logjail.sock");
    let log = dir.path().join("app.log");
    write_config(dir.path(), 3, true);
    let config = Config::load(&dir.path().join("logjail.yaml")).unwrap();
    let mut daemon = TestDaemon::builder(config).start();
    daemon.wait_for_socket().await;

    let out = cli(&socket, &["ban", "blacklist", "192.0.2.200"]).await;
    assert!(out.status.success());
    let out = cli(&socket, &["ban", "extra", "192.0.2.201"]).await;
    assert!(out.status.success());
    append(&log, "login failed from 198.51.100.1");
    append(&log, "login failed from 198.51.100.1");
    let mut counted = 0;
    tokio::time::timeout(Duration::from_secs(10), async {
        while counted < 2 {
            if let Ok(DaemonEvent::Failure { .. }) = daemon.events.recv().await {
                counted += 1;
            }
        }
    })
    .await
    .unwrap();

    // A broken file: refused, every error listed, nothing changes.
    std::fs::write(
        dir.path().join("logjail.yaml"),
        "jails:\n  app:\n    maxretry: 0\n    bantime: soon\n",
    )
    .unwrap();
    let out = cli(&socket, &["reload"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("reload refused, the running configuration stays (3 errors)"),
        "{stderr}"
    );
    assert!(stderr.contains("maxretry"), "{stderr}");
    assert!(stderr.contains("bantime"), "{stderr}");
    let out = cli(&socket, &["get", "app", "maxretry"]).await;
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "3\n");

    // A good change: app's maxretry rises to 4, `extra` goes away (its ban is lifted).
    write_config(dir.path(), 4, false);
    let out = cli(&socket, &["reload"]).await;
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("1 removed, 1 changed, 1 unchanged"),
        "{stdout}"
    );
    let out = cli(&socket, &["get", "app", "maxretry"]).await;
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "4\n");
    let out = cli(&socket, &["get", "blacklist", "banned"]).await;
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "192.0.2.200\n");
    let out = cli(&socket, &["status", "extra"]).await;
    assert!(!out.status.success());

    // The two failures counted before the reload still count: two more make four.
    append(&log, "login failed from 198.51.100.1");
    append(&log, "login failed from 198.51.100.1");
    let host: IpAddr = "198.51.100.1".parse().unwrap();
    let banned = tokio::time::timeout(Duration::from_secs(10), async {
        let mut decisions = Vec::new();
        loop {
            match daemon.events.recv().await.unwrap() {
                DaemonEvent::Failure { decision, .. } => decisions.push(decision),
                DaemonEvent::Banned { order, .. } if order.host == host => {
                    return (order, decisions);
                }
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(banned.0.failures, 4);
    assert_eq!(
        banned.1[0],
        Decision::Counted {
            failures: 3,
            maxretry: 4
        }
    );

    daemon.stop().await;
}
