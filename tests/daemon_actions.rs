//! Notifications from the running daemon: a ban and its manual unban each run the jail's
//! command, with the address as one argument, while the jail only logs (dry run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::time::Duration;

use support::TestDaemon;

async fn wait_for(path: &std::path::Path) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !path.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} never appeared", path.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ban_and_unban_run_the_command_action() {
    let dir = tempfile::tempdir().unwrap();
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
    maxretry: 2
    action:
      - log
      - command: ["/usr/bin/touch", "{dir}/<event>-<jail>-<ip>"]
    sources:
      - file: {dir}/app.log
"#,
        dir = dir.path().display()
    );
    let daemon = TestDaemon::builder(support::config_from_yaml(&text)).start();
    let mut log = std::fs::File::create(dir.path().join("app.log")).unwrap();
    writeln!(log, "login failed from 192.0.2.31").unwrap();
    writeln!(log, "login failed from 192.0.2.31").unwrap();
    drop(log);
    wait_for(&dir.path().join("ban-app-192.0.2.31")).await;

    let output = daemon.cli(&["unban", "app", "192.0.2.31"]).await;
    assert!(output.status.success(), "{output:?}");
    wait_for(&dir.path().join("unban-app-192.0.2.31")).await;
    daemon.stop().await;
}
