//! logjail running in a container (as it is deployed) never reads its own log, even when its
//! container carries the labels of a jail: its ban lines would count again in `recidive`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{Containers, Stream, WAIT, container_logs, scratch, unique_name, write_line};

/// Waits until the container's log contains `needle` (polling the log, bounded).
async fn wait_for_log(name: &str, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = container_logs(name).await;
        if log.contains(needle) {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {needle:?} in the log of {name}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logjail_in_a_container_skips_its_own_log() {
    let dir = scratch();
    let config = dir.path().join("logjail.yaml");
    std::fs::write(
        &config,
        r#"
filters:
  testauth:
    failregex:
      - '^auth failure for \S+ from <HOST>$'
docker:
  enabled: true
jails:
  t23rec:
    filter: recidive
    maxretry: 1
store:
  path: /tmp/logjail.db
control:
  socket: /tmp/logjail.sock
metrics:
  enabled: false
"#,
    )
    .unwrap();
    let logjail = unique_name("self");
    let attacked = unique_name("self-attacked");
    let mut containers = Containers::new();
    containers
        .run(
            &logjail,
            &[
                // What users grant the sidecar: logjail sets up its firewall at start.
                "--cap-add",
                "NET_ADMIN",
                "--cap-add",
                "NET_RAW",
                // Labelled for the recidive jail: only the own-container check keeps it out.
                "--label",
                "logjail.jails=t23rec",
                "-v",
                &format!(
                    "{}:/usr/local/bin/logjail:ro",
                    env!("CARGO_BIN_EXE_logjail")
                ),
                "-v",
                &format!("{}:/etc/logjail/logjail.yaml:ro", config.display()),
                "-v",
                "/var/run/docker.sock:/var/run/docker.sock",
                "-v",
                "/var/lib/docker/containers:/var/lib/docker/containers:ro",
                "logjail-test/debian:bookworm",
                "logjail",
                "run",
            ],
        )
        .await;
    wait_for_log(&logjail, "connected to Docker").await;
    containers
        .run(
            &attacked,
            &[
                "--label",
                "logjail.jail.t23b.filter=testauth",
                "--label",
                "logjail.jail.t23b.maxretry=1",
                "logjail-test/busybox:local",
                "sleep",
                "3600",
            ],
        )
        .await;
    write_line(
        &attacked,
        Stream::Stdout,
        "auth failure for a from 192.0.2.251",
    )
    .await;
    wait_for_log(&logjail, "ban jail=t23b host=192.0.2.251").await;
    // A second ban, after the first ban line was long in logjail's own log.
    write_line(
        &attacked,
        Stream::Stdout,
        "auth failure for b from 192.0.2.252",
    )
    .await;
    let log = wait_for_log(&logjail, "ban jail=t23b host=192.0.2.252").await;
    assert!(
        log.contains("logjail runs in a container: its own log is not read"),
        "{log}"
    );
    assert!(
        !log.contains("jail=t23rec"),
        "logjail read its own log:\n{log}"
    );
}
