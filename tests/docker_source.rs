//! The Docker source against the real engine: containers that print failure lines on stdout
//! and stderr, with labels or selected by YAML, read from their json-file logs or through the
//! API, through restarts, rotation, renames, removal and logjail restarts.
//!
//! Each test runs logjail in-process on its own store, names its containers
//! `lj-test-<test>-<pid>` and its jails uniquely (every daemon on the machine sees every
//! labelled container), and removes its containers even when it fails. Lines are written into
//! a running container through its PID 1's stdout or stderr, so a test decides when each line
//! exists; waits are bounded by timeouts, never by sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logjail::jail::Decision;
use logjail::messages::Origin;
use support::{
    Containers, Stream, TestDaemon, captured_log, docker, ip, scratch, unique_name, write_line,
};

const BUSYBOX: &str = "logjail-test/busybox:local";

/// Filters and the Docker section every test shares; jails are added per test.
fn config(read_mode: &str, jails: &str) -> String {
    format!(
        r#"
filters:
  testauth:
    failregex:
      - '^auth failure for \S+ from <HOST>$'
docker:
  enabled: true
  read_mode: {read_mode}
jails:
  placeholder-manual:
    manual: true
{jails}
"#
    )
}

fn hosts(judged: &[support::Judged]) -> Vec<String> {
    judged.iter().map(|j| j.host.to_string()).collect()
}

fn counts(judged: &[support::Judged]) -> Vec<Option<u32>> {
    judged.iter().map(support::Judged::count).collect()
}

/// A label-defined jail, lines on stdout and stderr, the ban on the third failure, every
/// failure carrying the container's id and name.
async fn label_jail_bans(read_mode: &str, test: &str, jail: &str) {
    let dir = scratch();
    let name = unique_name(test);
    let mut containers = Containers::new();
    let mut daemon = TestDaemon::start(&config(read_mode, ""), dir.path());
    let id = containers
        .run(
            &name,
            &[
                "--label",
                &format!("logjail.jail.{jail}.filter=testauth"),
                "--label",
                &format!("logjail.jail.{jail}.maxretry=3"),
                "--label",
                &format!("logjail.jail.{jail}.bantime=1h"),
                BUSYBOX,
                "sleep",
                "3600",
            ],
        )
        .await;
    write_line(
        &name,
        Stream::Stdout,
        "auth failure for bob from 192.0.2.10",
    )
    .await;
    write_line(
        &name,
        Stream::Stderr,
        "auth failure for eve from 192.0.2.10",
    )
    .await;
    write_line(&name, Stream::Stdout, "unrelated chatter").await;
    write_line(
        &name,
        Stream::Stderr,
        "auth failure for joe from 192.0.2.10",
    )
    .await;

    let mut judged = Vec::new();
    for _ in 0..3 {
        judged.push(daemon.next_failure(&name).await);
    }
    assert_eq!(counts(&judged), [Some(1), Some(2), Some(3)], "{judged:?}");
    assert!(
        judged
            .iter()
            .all(|j| j.jail == jail && j.host == ip("192.0.2.10"))
    );
    assert!(matches!(&judged[2].decision, Decision::Ban(order) if order.jail == jail));
    assert_eq!(
        *judged[0].origin,
        Origin::Container {
            id: id.clone(),
            name: name.clone()
        }
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_defined_jail_bans_from_the_json_file_log() {
    label_jail_bans("auto", "labels-file", "t01lab").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_defined_jail_bans_through_the_api() {
    label_jail_bans("api", "labels-api", "t02lab").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_jails_select_containers_by_name_and_label_and_enable_false_opts_out() {
    let dir = scratch();
    let pid = std::process::id();
    let by_name = unique_name("yamlsel-name");
    let by_label = unique_name("labelled");
    let opted_out = unique_name("yamlsel-off");
    let role = format!("lj.test.role=yamlsel-{pid}");
    let mut containers = Containers::new();
    // Running before logjail starts: found by the listing, not by an event.
    containers.run(&by_name, &[BUSYBOX, "sleep", "3600"]).await;
    containers
        .run(&by_label, &["--label", &role, BUSYBOX, "sleep", "3600"])
        .await;
    containers
        .run(
            &opted_out,
            &["--label", "logjail.enable=false", BUSYBOX, "sleep", "3600"],
        )
        .await;
    let jails = format!(
        r#"
  t03name:
    filter: testauth
    maxretry: 2
    sources:
      - container: {{name: "lj-test-yamlsel-*-{pid}"}}
  t03label:
    filter: testauth
    maxretry: 2
    sources:
      - container: {{label: "{role}"}}
"#
    );
    let mut daemon = TestDaemon::start(&config("auto", &jails), dir.path());
    write_line(
        &by_name,
        Stream::Stderr,
        "auth failure for a from 198.51.100.1",
    )
    .await;
    write_line(
        &by_label,
        Stream::Stdout,
        "auth failure for b from 198.51.100.2",
    )
    .await;
    write_line(
        &opted_out,
        Stream::Stdout,
        "auth failure for c from 198.51.100.3",
    )
    .await;

    let first = daemon.next_failure(&by_name).await;
    assert_eq!(
        (first.jail.as_str(), first.host),
        ("t03name", ip("198.51.100.1"))
    );
    let second = daemon.next_failure(&by_label).await;
    assert_eq!(
        (second.jail.as_str(), second.host),
        ("t03label", ip("198.51.100.2"))
    );
    write_line(
        &by_name,
        Stream::Stderr,
        "auth failure for a from 198.51.100.1",
    )
    .await;
    let ban = daemon.banned("t03name", ip("198.51.100.1")).await;
    assert!(
        matches!(ban, logjail::daemon::DaemonEvent::Banned { origin: Some(o), .. } if support::origin_name(&o) == Some(by_name.as_str()))
    );
    let log = captured_log();
    assert!(
        log.lines().any(|line| line.contains(&opted_out)
            && line.contains("logjail.enable=false: not watching this container")),
        "{}",
        support::log_tail()
    );
    daemon.stop().await;
}

/// `docker.require_labels`: a container without the required label is never watched, even
/// though its own labels ask for a jail; one with it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_without_the_required_labels_are_not_watched() {
    let dir = scratch();
    let pid = std::process::id();
    let inside = unique_name("scope-in");
    let outside = unique_name("scope-out");
    let scope = format!("lj.test.scope=s{pid}");
    let jail = format!("t{pid}scope");
    let jail_labels = [
        "--label".to_string(),
        format!("logjail.jail.{jail}.filter=testauth"),
        "--label".to_string(),
        format!("logjail.jail.{jail}.maxretry=2"),
    ];
    let mut containers = Containers::new();
    let mut inside_args: Vec<&str> = jail_labels.iter().map(String::as_str).collect();
    inside_args.extend(["--label", &scope, BUSYBOX, "sleep", "3600"]);
    containers.run(&inside, &inside_args).await;
    let mut outside_args: Vec<&str> = jail_labels.iter().map(String::as_str).collect();
    outside_args.extend([BUSYBOX, "sleep", "3600"]);
    containers.run(&outside, &outside_args).await;

    let yaml = config("auto", "").replace(
        "  read_mode: auto\n",
        &format!("  read_mode: auto\n  require_labels: [\"{scope}\"]\n"),
    );
    let mut daemon = TestDaemon::start(&yaml, dir.path());
    for _ in 0..2 {
        write_line(
            &outside,
            Stream::Stderr,
            "auth failure for x from 198.51.100.9",
        )
        .await;
        write_line(
            &inside,
            Stream::Stderr,
            "auth failure for y from 198.51.100.8",
        )
        .await;
    }
    daemon.banned(&jail, ip("198.51.100.8")).await;
    // One more line through the watched container: by the time it is judged, a line of the
    // other (written before it) would have been too, had it been watched.
    write_line(
        &inside,
        Stream::Stdout,
        "auth failure for y from 198.51.100.7",
    )
    .await;
    daemon.failures_until(&inside, ip("198.51.100.7")).await;
    assert!(daemon.failures_so_far(&outside).is_empty());
    let log = captured_log();
    assert!(
        log.lines()
            .any(|line| line.contains(&inside) && line.contains("watching container")),
        "{}",
        support::log_tail()
    );
    assert!(
        !log.lines()
            .any(|line| line.contains(&outside) && line.contains("watching container")),
        "{}",
        support::log_tail()
    );
    daemon.stop().await;
}

/// A TTY container's output (`\r\n` line ends, one stream) counts like any other.
async fn tty_container(read_mode: &str, test: &str, jail: &str) {
    let dir = scratch();
    let name = unique_name(test);
    let mut containers = Containers::new();
    let mut daemon = TestDaemon::start(&config(read_mode, ""), dir.path());
    containers
        .run(
            &name,
            &[
                "-t",
                "--label",
                &format!("logjail.jail.{jail}.filter=testauth"),
                "--label",
                &format!("logjail.jail.{jail}.maxretry=2"),
                BUSYBOX,
                "sh",
                "-c",
                "echo 'auth failure for tty from 203.0.113.5'; sleep 3600",
            ],
        )
        .await;
    let first = daemon.next_failure(&name).await;
    assert_eq!((first.host, first.count()), (ip("203.0.113.5"), Some(1)));
    write_line(
        &name,
        Stream::Stdout,
        "auth failure for tty from 203.0.113.5",
    )
    .await;
    let second = daemon.next_failure(&name).await;
    assert!(matches!(second.decision, Decision::Ban(_)), "{second:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_container_json_file() {
    tty_container("auto", "tty-file", "t04tty").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_container_api() {
    tty_container("api", "tty-api", "t05tty").await;
}

/// Lines longer than Docker's 16 KiB pieces are joined (and a piece is never taken for a
/// line of its own); bytes that are not UTF-8 do not stop anything; what follows still counts.
async fn long_lines_and_bad_bytes(read_mode: &str, test: &str, jail: &str) {
    let dir = scratch();
    let name = unique_name(test);
    let mut containers = Containers::new();
    containers
        .run(
            &name,
            &[
                "--label",
                &format!("logjail.jail.{jail}.filter=testauth"),
                "--label",
                &format!("logjail.jail.{jail}.maxretry=100"),
                BUSYBOX,
                "sleep",
                "3600",
            ],
        )
        .await;
    let mut daemon = TestDaemon::start(&config(read_mode, ""), dir.path());
    let user = "x".repeat(40_000);
    write_line(
        &name,
        Stream::Stderr,
        &format!("auth failure for {user} from 192.0.2.31"),
    )
    .await;
    docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "printf 'bad \\377\\376 bytes\\n' > /proc/1/fd/1",
    ])
    .await;
    // Docker cuts this line right before `auth`: read as a line of its own, the second piece
    // would ban 6.6.6.6.
    let padding = "y".repeat(16 * 1024);
    write_line(
        &name,
        Stream::Stdout,
        &format!("{padding}auth failure for z from 6.6.6.6"),
    )
    .await;
    write_line(&name, Stream::Stdout, "auth failure for m from 192.0.2.39").await;
    let judged = daemon.failures_until(&name, ip("192.0.2.39")).await;
    assert_eq!(hosts(&judged), ["192.0.2.31", "192.0.2.39"], "{judged:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_and_bad_bytes_json_file() {
    long_lines_and_bad_bytes("auto", "long-file", "t06long").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_and_bad_bytes_api() {
    long_lines_and_bad_bytes("api", "long-api", "t07long").await;
}

/// A restarted container prints its start-up lines again: each printed line counts once,
/// the old ones are not read again.
async fn container_restart(read_mode: &str, test: &str, jail: &str) {
    let dir = scratch();
    let name = unique_name(test);
    let mut containers = Containers::new();
    let mut daemon = TestDaemon::start(&config(read_mode, ""), dir.path());
    containers
        .run(
            &name,
            &[
                "--label",
                &format!("logjail.jail.{jail}.filter=testauth"),
                "--label",
                &format!("logjail.jail.{jail}.maxretry=100"),
                BUSYBOX,
                "sh",
                "-c",
                "echo 'auth failure for a from 192.0.2.40'; \
                 echo 'auth failure for b from 192.0.2.41' >&2; sleep 3600",
            ],
        )
        .await;
    let first = [
        daemon.next_failure(&name).await,
        daemon.next_failure(&name).await,
    ];
    let mut first_hosts = hosts(&first);
    first_hosts.sort();
    assert_eq!(first_hosts, ["192.0.2.40", "192.0.2.41"]);
    docker(&["restart", "-t", "0", &name]).await;
    // The start-up lines of the second run, then a marker written after them.
    let mut second = vec![
        daemon.next_failure(&name).await,
        daemon.next_failure(&name).await,
    ];
    write_line(&name, Stream::Stdout, "auth failure for m from 192.0.2.49").await;
    second.extend(daemon.failures_until(&name, ip("192.0.2.49")).await);
    second.sort_by_key(|j| j.host);
    assert_eq!(
        hosts(&second),
        ["192.0.2.40", "192.0.2.41", "192.0.2.49"],
        "{second:?}"
    );
    assert_eq!(counts(&second), [Some(2), Some(2), Some(1)], "{second:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_restart_json_file() {
    container_restart("auto", "restart-file", "t08rst").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_restart_api() {
    container_restart("api", "restart-api", "t09rst").await;
}

/// Lines written just before a container exits count, even when `--rm` removes it at once.
async fn last_words_of_a_removed_container(read_mode: &str, test: &str, jail: &str) {
    let dir = scratch();
    let name = unique_name(test);
    let mut containers = Containers::new();
    let mut daemon = TestDaemon::start(&config(read_mode, ""), dir.path());
    containers
        .run(
            &name,
            &[
                "--rm",
                "--label",
                &format!("logjail.jail.{jail}.filter=testauth"),
                "--label",
                &format!("logjail.jail.{jail}.maxretry=3"),
                BUSYBOX,
                "sh",
                "-c",
                "sleep 1; for i in 1 2 3; do echo \"auth failure for u$i from 192.0.2.60\"; done",
            ],
        )
        .await;
    let judged = [
        daemon.next_failure(&name).await,
        daemon.next_failure(&name).await,
        daemon.next_failure(&name).await,
    ];
    assert_eq!(counts(&judged), [Some(1), Some(2), Some(3)]);
    assert!(matches!(judged[2].decision, Decision::Ban(_)));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_words_of_a_removed_container_json_file() {
    last_words_of_a_removed_container("auto", "rm-file", "t10rm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_words_of_a_removed_container_api() {
    last_words_of_a_removed_container("api", "rm-api", "t11rm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_container_keeps_counting_under_its_new_name() {
    let dir = scratch();
    let name = unique_name("rename-old");
    let new_name = unique_name("rename-new");
    let mut containers = Containers::new();
    containers.track(&new_name);
    let mut daemon = TestDaemon::start(&config("auto", ""), dir.path());
    containers
        .run(
            &name,
            &[
                "--label",
                "logjail.jail.t12ren.filter=testauth",
                "--label",
                "logjail.jail.t12ren.maxretry=100",
                BUSYBOX,
                "sleep",
                "3600",
            ],
        )
        .await;
    write_line(&name, Stream::Stdout, "auth failure for a from 192.0.2.70").await;
    assert_eq!(daemon.next_failure(&name).await.count(), Some(1));
    docker(&["rename", &name, &new_name]).await;
    write_line(
        &new_name,
        Stream::Stdout,
        "auth failure for a from 192.0.2.70",
    )
    .await;
    write_line(
        &new_name,
        Stream::Stdout,
        "auth failure for m from 192.0.2.79",
    )
    .await;
    let judged = daemon.failures_until(&new_name, ip("192.0.2.79")).await;
    assert_eq!(hosts(&judged), ["192.0.2.70", "192.0.2.79"], "{judged:?}");
    assert_eq!(counts(&judged), [Some(2), Some(1)]);
    daemon.stop().await;
}

/// json-file rotation (`max-size`): every line of every rotated file is read once.
async fn rotation(read_mode: &str, test: &str, jail: &str) {
    let dir = scratch();
    let name = unique_name(test);
    let mut containers = Containers::new();
    let mut daemon = TestDaemon::start(&config(read_mode, ""), dir.path());
    let id = containers
        .run(
            &name,
            &[
                "--log-opt",
                "max-size=2k",
                "--log-opt",
                "max-file=5",
                "--label",
                &format!("logjail.jail.{jail}.filter=testauth"),
                "--label",
                &format!("logjail.jail.{jail}.maxretry=1000"),
                BUSYBOX,
                "sh",
                "-c",
                "i=0; while [ $i -lt 120 ]; do \
                   echo \"auth failure for user$i from 192.0.2.$((i % 40 + 100))\"; \
                   i=$((i+1)); sleep 0.02; done; \
                 echo 'auth failure for end from 192.0.2.99'; sleep 3600",
            ],
        )
        .await;
    let judged = daemon.failures_until(&name, ip("192.0.2.99")).await;
    assert_eq!(judged.len(), 121, "{:?}", hosts(&judged));
    for (i, failure) in judged[..120].iter().enumerate() {
        assert_eq!(failure.host, ip(&format!("192.0.2.{}", i % 40 + 100)));
        assert_eq!(failure.count(), Some(i as u32 / 40 + 1), "line {i}");
    }
    let log_path = docker(&["inspect", "-f", "{{.LogPath}}", &id]).await;
    assert!(
        std::path::Path::new(&format!("{log_path}.1")).exists(),
        "the log was rotated"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_file_rotation() {
    rotation("auto", "rotate-file", "t13rot").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_through_the_api() {
    rotation("api", "rotate-api", "t14rot").await;
}

/// logjail stops and starts again: what it read is not counted again, what was written
/// while it was down is not missed.
async fn logjail_restart(read_mode: &str, test: &str, jail: &str) {
    let dir = scratch();
    let name = unique_name(test);
    let mut containers = Containers::new();
    let yaml = config(read_mode, "");
    containers
        .run(
            &name,
            &[
                "--label",
                &format!("logjail.jail.{jail}.filter=testauth"),
                "--label",
                &format!("logjail.jail.{jail}.maxretry=3"),
                BUSYBOX,
                "sleep",
                "3600",
            ],
        )
        .await;
    let mut daemon = TestDaemon::start(&yaml, dir.path());
    write_line(&name, Stream::Stdout, "auth failure for a from 192.0.2.80").await;
    write_line(&name, Stream::Stderr, "auth failure for b from 192.0.2.81").await;
    write_line(&name, Stream::Stderr, "auth failure for b from 192.0.2.81").await;
    let before = [
        daemon.next_failure(&name).await,
        daemon.next_failure(&name).await,
        daemon.next_failure(&name).await,
    ];
    assert_eq!(hosts(&before), ["192.0.2.80", "192.0.2.81", "192.0.2.81"]);
    daemon.stop().await;

    write_line(&name, Stream::Stdout, "auth failure for c from 192.0.2.82").await;
    write_line(&name, Stream::Stderr, "auth failure for d from 192.0.2.83").await;

    let mut daemon = TestDaemon::start(&yaml, dir.path());
    write_line(&name, Stream::Stdout, "auth failure for m from 192.0.2.89").await;
    let after = daemon.failures_until(&name, ip("192.0.2.89")).await;
    // 192.0.2.81 read again would make a third failure and a false ban.
    assert_eq!(
        hosts(&after),
        ["192.0.2.82", "192.0.2.83", "192.0.2.89"],
        "{after:?}"
    );
    assert_eq!(counts(&after), [Some(1), Some(1), Some(1)]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logjail_restart_json_file() {
    logjail_restart("auto", "ljrestart-file", "t15lj").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logjail_restart_api() {
    logjail_restart("api", "ljrestart-api", "t16lj").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logjail_restart_switching_from_api_to_json_file() {
    let dir = scratch();
    let name = unique_name("ljrestart-switch");
    let mut containers = Containers::new();
    containers
        .run(
            &name,
            &[
                "--label",
                "logjail.jail.t17sw.filter=testauth",
                BUSYBOX,
                "sleep",
                "3600",
            ],
        )
        .await;
    let mut daemon = TestDaemon::start(&config("api", ""), dir.path());
    write_line(&name, Stream::Stdout, "auth failure for a from 192.0.2.90").await;
    assert_eq!(daemon.next_failure(&name).await.host, ip("192.0.2.90"));
    daemon.stop().await;
    write_line(&name, Stream::Stdout, "auth failure for b from 192.0.2.91").await;
    let mut daemon = TestDaemon::start(&config("auto", ""), dir.path());
    write_line(&name, Stream::Stdout, "auth failure for m from 192.0.2.98").await;
    let after = daemon.failures_until(&name, ip("192.0.2.98")).await;
    assert_eq!(hosts(&after), ["192.0.2.91", "192.0.2.98"], "{after:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_label_is_reported_once_and_skips_only_its_jail() {
    let dir = scratch();
    let bad = unique_name("badlabel");
    let good = unique_name("goodlabel");
    let mut containers = Containers::new();
    let jails = r#"
  t18yaml:
    filter: testauth
    maxretry: 2
"#;
    let mut daemon = TestDaemon::start(&config("auto", jails), dir.path());
    containers
        .run(
            &bad,
            &[
                "--label",
                "logjail.jail.t18good.filter=testauth",
                "--label",
                "logjail.jail.t18good.maxretry=2",
                "--label",
                "logjail.jail.t18bad.filter=testauth",
                "--label",
                "logjail.jail.t18bad.findtime=10x",
                "--label",
                "logjail.jail.t18nof.filter=no-such-filter",
                "--label",
                "logjail.jail.t18cidr.ignoreip=10.0.0.0/33",
                BUSYBOX,
                "sleep",
                "3600",
            ],
        )
        .await;
    containers
        .run(
            &good,
            &[
                "--label",
                "logjail.jails=t18yaml,t18unknown",
                BUSYBOX,
                "sleep",
                "3600",
            ],
        )
        .await;
    for _ in 0..2 {
        write_line(&bad, Stream::Stdout, "auth failure for a from 203.0.113.20").await;
        write_line(
            &good,
            Stream::Stdout,
            "auth failure for b from 203.0.113.21",
        )
        .await;
    }
    let from_bad = [
        daemon.next_failure(&bad).await,
        daemon.next_failure(&bad).await,
    ];
    assert!(from_bad.iter().all(|j| j.jail == "t18good"), "{from_bad:?}");
    assert!(matches!(from_bad[1].decision, Decision::Ban(_)));
    let from_good = [
        daemon.next_failure(&good).await,
        daemon.next_failure(&good).await,
    ];
    assert!(
        from_good.iter().all(|j| j.jail == "t18yaml"),
        "{from_good:?}"
    );
    assert!(matches!(from_good[1].decision, Decision::Ban(_)));

    // A restart of the container does not repeat the report.
    docker(&["restart", "-t", "0", &bad]).await;
    write_line(&bad, Stream::Stdout, "auth failure for m from 203.0.113.29").await;
    daemon.failures_until(&bad, ip("203.0.113.29")).await;

    let log = captured_log();
    let reports = |needle: &str, container: &str| {
        log.lines()
            .filter(|line| {
                line.contains(needle) && line.contains(container) && line.contains("WARN")
            })
            .count()
    };
    assert_eq!(
        reports(
            "`logjail.jail.t18bad.findtime=10x`: `10x` is not a duration",
            &bad
        ),
        1,
        "{log}"
    );
    assert_eq!(
        reports(
            "`logjail.jail.t18nof.filter=no-such-filter`: unknown filter",
            &bad
        ),
        1
    );
    assert_eq!(
        reports(
            "`logjail.jail.t18cidr.ignoreip=10.0.0.0/33`: \"10.0.0.0/33\" is not an IP address",
            &bad
        ),
        1
    );
    assert_eq!(reports("no jail \"t18unknown\"", &good), 1);
    daemon.stop().await;
}

/// A container that floods its log and one whose driver keeps no log do not hold up a third
/// container's failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_and_an_unreadable_container_do_not_stall_the_others() {
    let dir = scratch();
    let flood = unique_name("flood");
    let silent = unique_name("nolog");
    let good = unique_name("calm");
    let mut containers = Containers::new();
    let mut daemon = TestDaemon::start(&config("auto", ""), dir.path());
    containers
        .run(
            &flood,
            &[
                "--label",
                "logjail.jail.t19flood.filter=testauth",
                BUSYBOX,
                "sh",
                "-c",
                "yes 'GET /index.html 200 nothing to see here, just a busy server' | head -n 300000; sleep 3600",
            ],
        )
        .await;
    containers
        .run(
            &silent,
            &[
                "--log-driver",
                "none",
                "--label",
                "logjail.jail.t19none.filter=testauth",
                BUSYBOX,
                "sleep",
                "3600",
            ],
        )
        .await;
    containers
        .run(
            &good,
            &[
                "--label",
                "logjail.jail.t19calm.filter=testauth",
                BUSYBOX,
                "sleep",
                "3600",
            ],
        )
        .await;
    write_line(
        &good,
        Stream::Stdout,
        "auth failure for a from 198.51.100.50",
    )
    .await;
    let judged = daemon.next_failure(&good).await;
    assert_eq!(
        (judged.jail.as_str(), judged.host),
        ("t19calm", ip("198.51.100.50"))
    );
    let log = captured_log();
    assert!(
        log.lines().any(|line| line.contains(&silent)
            && line.contains("Docker cannot send this container's logs")),
        "{}",
        support::log_tail()
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_without_a_jail_is_said_once_and_costs_nothing_more() {
    let dir = scratch();
    let name = unique_name("enable-only");
    let mut containers = Containers::new();
    let mut daemon = TestDaemon::start(&config("auto", ""), dir.path());
    containers
        .run(
            &name,
            &["--label", "logjail.enable=true", BUSYBOX, "sleep", "3600"],
        )
        .await;
    // A restart is a new start event: the container is not looked at again.
    docker(&["restart", "-t", "0", &name]).await;
    let marker = unique_name("enable-marker");
    containers
        .run(
            &marker,
            &[
                "--label",
                "logjail.jail.t21mark.filter=testauth",
                BUSYBOX,
                "sh",
                "-c",
                "echo 'auth failure for m from 198.51.100.60'; sleep 3600",
            ],
        )
        .await;
    daemon.next_failure(&marker).await;
    let said = captured_log()
        .lines()
        .filter(|line| line.contains(&name) && line.contains("logjail.enable=true but no jail"))
        .count();
    assert_eq!(said, 1, "{}", support::log_tail());
    daemon.stop().await;
}

/// `logjail reload` with other jails: containers are matched again, and one passed over
/// before is now followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_matches_containers_against_the_new_jails() {
    let dir = scratch();
    let pid = std::process::id();
    let selected = unique_name("reload-sel");
    let passed_over = unique_name("reload-other");
    let socket = dir.path().join("logjail.sock");
    let write_config = |jails: &str| {
        let text = format!(
            "{}\nstore:\n  path: {}\ncontrol:\n  socket: {}\nmetrics:\n  enabled: false\n",
            config("auto", jails),
            dir.path().join("logjail.db").display(),
            socket.display()
        );
        std::fs::write(dir.path().join("logjail.yaml"), text).unwrap();
    };
    write_config(&format!(
        "  t22a:\n    filter: testauth\n    sources:\n      - container: {{name: \"lj-test-reload-sel-{pid}\"}}\n"
    ));
    let mut containers = Containers::new();
    containers.run(&selected, &[BUSYBOX, "sleep", "3600"]).await;
    containers
        .run(
            &passed_over,
            &[
                "--label",
                &format!("lj.test.reload={pid}"),
                BUSYBOX,
                "sleep",
                "3600",
            ],
        )
        .await;
    let config = logjail::config::Config::load(&dir.path().join("logjail.yaml")).unwrap();
    let mut daemon = TestDaemon::start_config(config);
    write_line(
        &selected,
        Stream::Stdout,
        "auth failure for a from 192.0.2.200",
    )
    .await;
    assert_eq!(daemon.next_failure(&selected).await.jail, "t22a");

    write_config(&format!(
        "  t22b:\n    filter: testauth\n    sources:\n      - container: {{name: \"lj-test-reload-*-{pid}\"}}\n"
    ));
    let out = daemon.cli(&["reload"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    write_line(
        &selected,
        Stream::Stdout,
        "auth failure for a from 192.0.2.201",
    )
    .await;
    write_line(
        &passed_over,
        Stream::Stdout,
        "auth failure for b from 192.0.2.202",
    )
    .await;
    let after = daemon.next_failure(&selected).await;
    assert_eq!(
        (after.jail.as_str(), after.host),
        ("t22b", ip("192.0.2.201"))
    );
    let other = daemon.next_failure(&passed_over).await;
    assert_eq!(
        (other.jail.as_str(), other.host),
        ("t22b", ip("192.0.2.202"))
    );
    daemon.stop().await;
}
