//! The Docker engine restarts while logjail runs: logjail reconnects, resumes every container
//! where it stopped reading (nothing counted twice, nothing missed) and follows containers
//! created afterwards. The engine is a private one, so that no other test notices.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::dockerd::PrivateDockerd;
use support::{Containers, Stream, TestDaemon, captured_log, ip, scratch, write_at};

const IMAGE: &str = "logjail-private/busybox:local";

fn config(host: &str, read_mode: &str) -> String {
    format!(
        r#"
filters:
  testauth:
    failregex:
      - '^auth failure for \S+ from <HOST>$'
docker:
  enabled: true
  host: "{host}"
  read_mode: {read_mode}
jails:
  t20yaml:
    filter: testauth
    maxretry: 10
    sources:
      - container: {{name: "lj-engine-*"}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logjail_follows_containers_across_a_docker_restart() {
    let mut engine = PrivateDockerd::start().await;
    engine.import_busybox(IMAGE).await;
    let host = engine.host.clone();
    let mut containers = Containers::on_host(&host);
    let old = "lj-engine-old";
    let new = "lj-engine-new";
    containers
        .run(
            old,
            &[
                "--restart",
                "always",
                IMAGE,
                "sh",
                "-c",
                "echo 'auth failure for boot from 192.0.2.110'; sleep 3600",
            ],
        )
        .await;

    // One logjail reads the json-file logs, the other the API: both must get it right.
    let file_dir = scratch();
    let api_dir = scratch();
    let mut by_file = TestDaemon::start(&config(&host, "auto"), file_dir.path());
    let mut by_api = TestDaemon::start(&config(&host, "api"), api_dir.path());
    for daemon in [&mut by_file, &mut by_api] {
        let first = daemon.next_failure(old).await;
        assert_eq!((first.host, first.count()), (ip("192.0.2.110"), Some(1)));
    }
    write_at(
        Some(&host),
        old,
        Stream::Stderr,
        "auth failure for x from 192.0.2.111",
    )
    .await;
    for daemon in [&mut by_file, &mut by_api] {
        assert_eq!(daemon.next_failure(old).await.host, ip("192.0.2.111"));
    }

    engine.restart().await;

    // The restart policy brought the container back; it printed its boot line again.
    write_at(
        Some(&host),
        old,
        Stream::Stdout,
        "auth failure for m from 192.0.2.119",
    )
    .await;
    containers
        .run(
            new,
            &[
                IMAGE,
                "sh",
                "-c",
                "echo 'auth failure for n from 192.0.2.120'; sleep 3600",
            ],
        )
        .await;
    for daemon in [&mut by_file, &mut by_api] {
        let after = daemon.failures_until(old, ip("192.0.2.119")).await;
        let seen: Vec<(String, Option<u32>)> = after
            .iter()
            .map(|j| (j.host.to_string(), j.count()))
            .collect();
        assert_eq!(
            seen,
            [
                ("192.0.2.110".to_string(), Some(2)),
                ("192.0.2.119".to_string(), Some(1))
            ],
            "old lines were read again or new ones missed"
        );
        let from_new = daemon.next_failure(new).await;
        assert_eq!(from_new.host, ip("192.0.2.120"));
    }
    assert!(
        captured_log().contains("lost the connection to Docker"),
        "{}",
        support::log_tail()
    );
    by_file.stop().await;
    by_api.stop().await;
    drop(containers);
    engine.stop().await;
}
