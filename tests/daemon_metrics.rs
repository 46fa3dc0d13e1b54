//! `/metrics` and `/healthz` scraped over real HTTP on loopback after real bans.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use logjail::messages::DaemonEvent;
use support::TestDaemon;

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(address: SocketAddr, path: &str) -> (u16, String) {
    support::http_get(address, path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_ban() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let text = format!(
        r#"
store: {{path: {dir}/state.db}}
control: {{socket: {dir}/logjail.sock}}
docker: {{enabled: false}}
metrics: {{listen: "127.0.0.1:{port}"}}
filters:
  app:
    failregex: ['^login failed from <HOST>$']
jails:
  app:
    maxretry: 2
    bantime: 1h
    sources:
      - file: {dir}/app.log
"#,
        dir = dir.path().display()
    );
    let mut daemon = TestDaemon::builder(support::config_from_yaml(&text)).start();

    let mut log = std::fs::File::create(dir.path().join("app.log")).unwrap();
    writeln!(log, "login failed from 192.0.2.77").unwrap();
    writeln!(log, "unrelated line").unwrap();
    writeln!(log, "login failed from 192.0.2.77").unwrap();
    drop(log);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(DaemonEvent::Banned { .. }) = daemon.events.recv().await {
                break;
            }
        }
    })
    .await
    .unwrap();

    let (status, body) = get(address, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = get(address, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("logjail_jail_bans{jail=\"app\"} 1\n"),
        "{body}"
    );
    assert!(
        body.contains("logjail_jail_bans_total{jail=\"app\"} 1\n"),
        "{body}"
    );
    assert!(
        body.contains("logjail_jail_failures_total{jail=\"app\"} 2\n"),
        "{body}"
    );
    assert!(
        body.contains("logjail_jail_maxretry{jail=\"app\"} 2\n"),
        "{body}"
    );
    assert!(
        body.contains("logjail_jail_bantime_seconds{jail=\"app\"} 3600\n"),
        "{body}"
    );
    let source = format!("file {}/app.log", dir.path().display());
    assert!(
        body.contains(&format!(
            "logjail_source_lines_read_total{{source=\"{source}\"}} 3\n"
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "logjail_source_lines_matched_total{{source=\"{source}\"}} 2\n"
        )),
        "{body}"
    );
    assert!(!body.contains("192.0.2.77"), "no label carries an address");
    let (status, _) = get(address, "/nope").await;
    assert_eq!(status, 404);

    daemon.stop().await;
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "closed on stop"
    );
}
