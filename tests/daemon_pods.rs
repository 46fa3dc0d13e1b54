//! The daemon with its pods source against a real containerd (started by the test) running
//! host-network pods as the kubelet runs them, their containers writing failure lines to
//! their own stdout, which the runtime puts in real CRI log files:
//!
//! - a YAML jail selecting pods by `pods:` globs bans, lines of 20 KB (written as `P`
//!   pieces) included, and `logjail.io/enable: "false"` keeps a pod out of that selector;
//! - a pod's annotations define a jail (`logjail.io/jail.web.*`) and join a YAML one
//!   (`logjail.io/jails`); a bad annotation skips only its jail with one warning naming the
//!   namespace, the pod and the key; a pod-defined jail without a port is refused, said why;
//! - a container restart (`1.log`) keeps counting; a deleted pod's origin is detached and a
//!   new pod of the same name is routed afresh;
//! - a restarted logjail (stop, start on the same store) still lists the annotation jail's
//!   ban and counts none of the pod's old lines again;
//! - a reload of a changed file routes pods to a `pods:` jail it added.
//!
//! Every wait polls real state (the daemon's events, `/metrics`, the CLI, the store, the log
//! files), bounded by a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use logjail::config::Config;
use logjail::jail::Decision;
use logjail::messages::{DaemonEvent, Origin, PodContainer};
use logjail::store::Store;
use support::containerd::{Containerd, Pod, PodSpec};
use support::{Stream, TestDaemon, captured_log, ip, log_tail};

/// Longest wait for what the runtime and the daemon do in moments (a second or two at most;
/// a pod deleted is detached 5 s after its last line).
const WAIT: Duration = Duration::from_secs(30);

/// What a container runs: it says it started, then waits, as a server would; the test writes
/// its lines through its stdout (see `Containerd::write_line`).
const IDLE: &str = "echo started; sleep 100000";

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A test's containerd, folder and metrics address.
struct Lab {
    containerd: Containerd,
    dir: tempfile::TempDir,
    metrics: SocketAddr,
}

impl Lab {
    async fn start() -> Lab {
        let containerd = Containerd::start().await;
        let dir = tempfile::Builder::new()
            .prefix("ljpods")
            .tempdir_in("/tmp")
            .unwrap();
        let metrics = SocketAddr::new(ip("127.0.0.1"), free_port());
        Lab {
            containerd,
            dir,
            metrics,
        }
    }

    /// The configuration file's text: the pods source on this containerd, the `podauth`
    /// filter, and `jails` (YAML text indented under `jails:`).
    fn config_text(&self, jails: &str) -> String {
        format!(
            r#"
store: {{path: {dir}/state.db}}
control: {{socket: {dir}/lj.sock}}
docker: {{enabled: false}}
metrics: {{listen: "{metrics}"}}
pods: {{enabled: true, log_dir: {log_dir}, runtime_socket: {socket}}}
filters:
  podauth:
    failregex:
      - '^auth failure from <HOST>$'
      - '^auth failure from <HOST> padded x+$'
jails:
{jails}
"#,
            dir = self.dir.path().display(),
            metrics = self.metrics,
            log_dir = self.containerd.log_dir.display(),
            socket = self.containerd.socket().display(),
        )
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("logjail.yaml")
    }

    /// Writes the configuration file and starts a daemon on it (so that a reload re-reads it).
    fn start_daemon(&self, jails: &str) -> TestDaemon {
        std::fs::write(self.config_path(), self.config_text(jails)).unwrap();
        let config = Config::load(&self.config_path()).unwrap_or_else(|errors| panic!("{errors}"));
        TestDaemon::builder(config).patience(WAIT).start()
    }

    /// A pod with one container `app` running [`IDLE`]; its container id.
    async fn pod(&self, spec: PodSpec) -> (Pod, String) {
        let pod = self.containerd.run_pod(spec).await;
        let id = self.containerd.run_container(&pod, "app", 0, IDLE).await;
        wait_for_file_line(&pod.log_file("app", 0), "started").await;
        (pod, id)
    }

    /// `count` failure lines from `host` on the container's stdout.
    async fn failures(&self, container_id: &str, host: &str, count: usize) {
        for _ in 0..count {
            self.containerd
                .write_line(
                    container_id,
                    Stream::Stdout,
                    &format!("auth failure from {host}"),
                )
                .await;
        }
    }

    /// The lines-read counter of every pod container the matcher has routes for now (by
    /// `/metrics`, which asks the matcher at each scrape).
    async fn routed(&self) -> BTreeMap<String, u64> {
        let body = get(self.metrics, "/metrics").await;
        body.lines()
            .filter_map(|line| line.strip_prefix("logjail_source_lines_read_total{source=\"pod "))
            .filter_map(|rest| rest.split_once("\"} "))
            .map(|(source, count)| (source.to_string(), count.parse().unwrap()))
            .collect()
    }

    /// Polls `/metrics` until `done` holds for the routed pod containers.
    async fn wait_routed(&self, what: &str, done: impl Fn(&BTreeMap<String, u64>) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let routed = self.routed().await;
            if done(&routed) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; routed: {routed:?}\n{}",
                log_tail()
            );
            // Polling the matcher's state through /metrics, bounded by the deadline.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// How `/metrics` names a pod container (after `pod `).
/// A pod container's `source` label in `/metrics` (after the `pod ` prefix): the uid's start
/// tells a pod from its namesake.
fn source_name(pod: &Pod, container: &str) -> String {
    format!(
        "{}/{} container {container} ({})",
        pod.spec.namespace,
        pod.spec.name,
        &pod.spec.uid[pod.spec.uid.len() - 8..]
    )
}

async fn get(address: SocketAddr, path: &str) -> String {
    support::http_get(address, path).await.1
}

/// Waits until the CRI log file at `path` has a line whose message is `text`.
async fn wait_for_file_line(path: &Path, text: &str) {
    let suffix = format!(" F {text}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(path).is_ok_and(|log| log.lines().any(|l| l.ends_with(&suffix)))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for `{text}` in {}",
            path.display()
        );
        // Polling the file the runtime writes, bounded by the deadline.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pod_of(origin: &Origin) -> Option<&PodContainer> {
    match origin {
        Origin::Pod(container) => Some(container),
        _ => None,
    }
}

/// A failure as a jail judged it, from a pod's line.
#[derive(Debug, Clone)]
struct PodFailure {
    jail: String,
    host: IpAddr,
    container: PodContainer,
    decision: Decision,
}

impl PodFailure {
    fn count(&self) -> Option<u32> {
        match &self.decision {
            Decision::Counted { failures, .. } => Some(*failures),
            Decision::Ban(order) => Some(order.failures),
            _ => None,
        }
    }
}

/// The next failure a jail judged for a line of the pod named `pod`.
async fn next_pod_failure(daemon: &mut TestDaemon, pod: &str) -> PodFailure {
    daemon
        .next_event(&format!("failure from pod {pod}"), |event| match event {
            DaemonEvent::Failure {
                jail,
                host,
                origin,
                decision,
            } => pod_of(origin)
                .filter(|container| container.pod == pod)
                .map(|container| PodFailure {
                    jail: jail.to_string(),
                    host: *host,
                    container: container.clone(),
                    decision: decision.clone(),
                }),
            _ => None,
        })
        .await
}

/// The failures of pod `pod` up to and including the first one from `marker` in `jail`.
async fn pod_failures_until(
    daemon: &mut TestDaemon,
    pod: &str,
    jail: &str,
    marker: IpAddr,
) -> Vec<PodFailure> {
    let mut judged = Vec::new();
    loop {
        let next = next_pod_failure(daemon, pod).await;
        let done = next.host == marker && next.jail == jail;
        judged.push(next);
        if done {
            return judged;
        }
    }
}

/// Waits for a ban of `host` by `jail`; returns the origin it was banned from.
async fn banned_from(daemon: &mut TestDaemon, jail: &str, host: IpAddr) -> Option<PodContainer> {
    match daemon.banned(jail, host).await {
        DaemonEvent::Banned { origin, .. } => origin.as_deref().and_then(pod_of).cloned(),
        other => panic!("not a ban: {other:?}"),
    }
}

/// Lines of the captured log that say `needle`.
fn log_lines_with(needles: &[&str]) -> Vec<String> {
    captured_log()
        .lines()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_pods_jail_bans_through_20_kb_lines_and_an_opted_out_pod_is_never_read() {
    let lab = Lab::start().await;
    let mut daemon = lab.start_daemon(
        r#"  shopweb:
    filter: podauth
    maxretry: 3
    bantime: 1h
    sources:
      - pods: {namespace: shop, pod: "web-*", container: app}"#,
    );
    daemon.wait_for_socket().await;

    // Opted out: the selector matches it, its annotation keeps it out. Its lines are in its
    // file before the next pod exists.
    let (opted_out, opted_out_id) = lab
        .pod(PodSpec::new("shop", "web-0").annotation("logjail.io/enable", "false"))
        .await;
    lab.failures(&opted_out_id, "192.0.2.66", 3).await;
    wait_for_file_line(
        &opted_out.log_file("app", 0),
        "auth failure from 192.0.2.66",
    )
    .await;

    // Selected: two plain lines and one of 20 KB, which the runtime writes as pieces.
    let (web, web_id) = lab.pod(PodSpec::new("shop", "web-1")).await;
    // A pod the selector does not name (another container name) is not read either.
    let other = lab.containerd.run_pod(PodSpec::new("shop", "web-2")).await;
    let other_id = lab
        .containerd
        .run_container(&other, "sidecar", 0, IDLE)
        .await;
    lab.failures(&other_id, "192.0.2.67", 3).await;
    lab.failures(&web_id, "192.0.2.10", 2).await;
    let long = format!("auth failure from 192.0.2.10 padded {}", "x".repeat(20_480));
    lab.containerd
        .write_line(&web_id, Stream::Stdout, &long)
        .await;

    let mut judged = Vec::new();
    for _ in 0..3 {
        judged.push(next_pod_failure(&mut daemon, "web-1").await);
    }
    let counts: Vec<Option<u32>> = judged.iter().map(PodFailure::count).collect();
    assert_eq!(counts, [Some(1), Some(2), Some(3)], "{judged:?}");
    assert!(matches!(judged[2].decision, Decision::Ban(_)), "{judged:?}");
    assert_eq!(judged[2].container.uid, web.spec.uid);
    let from = banned_from(&mut daemon, "shopweb", ip("192.0.2.10")).await;
    assert_eq!(from.map(|c| c.pod), Some("web-1".to_string()));
    let log = std::fs::read_to_string(web.log_file("app", 0)).unwrap();
    assert!(
        log.lines().any(|line| line.split(' ').nth(2) == Some("P")),
        "the 20 KB line came as pieces"
    );

    // The opted-out pod was found before the selected one, and the router answers in order:
    // once the selected one is routed, the opted-out one was decided, and never routed.
    lab.wait_routed("web-1 routed", |routed| {
        routed.contains_key(&source_name(&web, "app"))
    })
    .await;
    let routed = lab.routed().await;
    assert!(
        !routed.contains_key(&source_name(&opted_out, "app")),
        "{routed:?}"
    );
    assert!(
        !routed.contains_key(&source_name(&other, "sidecar")),
        "{routed:?}"
    );
    let banned = daemon.cli(&["banned"]).await;
    let banned = String::from_utf8_lossy(&banned.stdout).into_owned();
    assert_eq!(banned.lines().count(), 1, "{banned}");
    assert!(banned.starts_with("shopweb\t192.0.2.10\t"), "{banned}");
    daemon.stop().await;

    // What was read is what the store keeps positions for: never the opted-out pod.
    let positions = Store::open(&lab.dir.path().join("state.db"))
        .unwrap()
        .load_positions()
        .unwrap();
    let keys: Vec<&String> = positions.keys().collect();
    assert!(
        keys.iter()
            .any(|key| key.starts_with("pod:shop/web-1/") && key.ends_with("/app")),
        "{keys:?}"
    );
    assert!(
        !keys
            .iter()
            .any(|key| key.starts_with("pod:shop/web-0/") || key.starts_with("pod:shop/web-2/")),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotations_define_and_join_jails_and_a_bad_or_portless_one_is_refused_with_its_reason() {
    let lab = Lab::start().await;
    let mut daemon = lab.start_daemon(
        r#"  yamljail:
    filter: podauth
    maxretry: 2
    bantime: 1h"#,
    );
    daemon.wait_for_socket().await;
    let spec = PodSpec::new("shop", "app-0")
        .annotation("logjail.io/jails", "yamljail")
        .annotation("logjail.io/jail.web.filter", "podauth")
        .annotation("logjail.io/jail.web.port", "8080")
        .annotation("logjail.io/jail.web.maxretry", "3")
        .annotation("logjail.io/jail.bad.filter", "podauth")
        .annotation("logjail.io/jail.bad.port", "8081")
        .annotation("logjail.io/jail.bad.maxretry", "many")
        .annotation("logjail.io/jail.noport.filter", "podauth");
    let (_pod, id) = lab.pod(spec).await;
    lab.failures(&id, "192.0.2.20", 3).await;

    let mut by_jail: BTreeMap<String, Vec<Option<u32>>> = BTreeMap::new();
    while by_jail.values().map(Vec::len).sum::<usize>() < 6 {
        let failure = next_pod_failure(&mut daemon, "app-0").await;
        assert_eq!(failure.host, ip("192.0.2.20"));
        by_jail
            .entry(failure.jail.clone())
            .or_default()
            .push(failure.count());
    }
    // yamljail bans at its second failure; the third is judged as already banned.
    assert_eq!(by_jail["web"], [Some(1), Some(2), Some(3)], "{by_jail:?}");
    assert_eq!(by_jail["yamljail"], [Some(1), Some(2), None], "{by_jail:?}");
    assert_eq!(by_jail.len(), 2, "only web and yamljail count: {by_jail:?}");
    banned_from(&mut daemon, "web", ip("192.0.2.20")).await;
    banned_from(&mut daemon, "yamljail", ip("192.0.2.20")).await;

    let status = daemon.cli(&["status", "web"]).await;
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains("pod shop/app-0"), "{status}");
    assert!(status.contains("192.0.2.20"), "{status}");
    for refused in ["bad", "noport"] {
        let answer = daemon.cli(&["status", refused]).await;
        assert!(!answer.status.success(), "jail {refused} must not exist");
    }

    // One warning for the bad annotation, naming namespace, pod and key as written.
    let bad = log_lines_with(&["pod shop/app-0", "logjail.io/jail.bad.maxretry", "WARN"]);
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert!(bad[0].contains("many"), "{}", bad[0]);
    assert!(bad[0].contains("(jail \"bad\" skipped)"), "{}", bad[0]);
    // The portless jail is refused with the reason, in the pod's words.
    let portless = log_lines_with(&["pod shop/app-0", "logjail.io/jail.noport.", "WARN"]);
    assert_eq!(portless.len(), 1, "{portless:#?}");
    assert!(
        portless[0].contains("must say which ports lead to the pod")
            && portless[0].contains("logjail.io/jail.NAME.port"),
        "{}",
        portless[0]
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_counting_and_a_deleted_pod_is_detached_then_its_namesake_routed_afresh() {
    let lab = Lab::start().await;
    let mut daemon = lab.start_daemon(
        r#"  shopweb:
    filter: podauth
    maxretry: 3
    findtime: 1h
    bantime: 1h
    sources:
      - pods: {namespace: shop, pod: "web-*"}"#,
    );
    daemon.wait_for_socket().await;
    let (pod, first) = lab.pod(PodSpec::new("shop", "web-0")).await;
    lab.failures(&first, "192.0.2.30", 2).await;
    for expected in [1, 2] {
        let failure = next_pod_failure(&mut daemon, "web-0").await;
        assert_eq!(failure.count(), Some(expected), "{failure:?}");
    }

    // The container dies and the kubelet starts attempt 1, which logs to 1.log.
    lab.containerd.stop_container(&first, 0).await;
    lab.containerd.wait_exited(&first).await;
    let second = lab.containerd.run_container(&pod, "app", 1, IDLE).await;
    wait_for_file_line(&pod.log_file("app", 1), "started").await;
    lab.failures(&second, "192.0.2.30", 1).await;
    let third = next_pod_failure(&mut daemon, "web-0").await;
    assert_eq!(
        third.count(),
        Some(3),
        "the restart kept counting: {third:?}"
    );
    assert!(matches!(third.decision, Decision::Ban(_)), "{third:?}");
    assert_eq!(third.container.uid, pod.spec.uid);
    banned_from(&mut daemon, "shopweb", ip("192.0.2.30")).await;
    let name = source_name(&pod, "app");
    let lines_before = lab.routed().await[&name];

    // The pod is deleted: its origin is detached (no routes left for it in the matcher).
    lab.containerd.delete_pod(&pod).await;
    lab.wait_routed("the deleted pod to be detached", |routed| {
        !routed.contains_key(&name)
    })
    .await;

    // A new pod of the same name (another uid): routed afresh, counted from its first line.
    let (again, again_id) = lab.pod(PodSpec::new("shop", "web-0")).await;
    assert_ne!(again.spec.uid, pod.spec.uid);
    lab.failures(&again_id, "192.0.2.31", 1).await;
    let fresh = next_pod_failure(&mut daemon, "web-0").await;
    assert_eq!(fresh.host, ip("192.0.2.31"));
    assert_eq!(fresh.container.uid, again.spec.uid, "{fresh:?}");
    assert_eq!(fresh.count(), Some(1));
    let routed = lab.routed().await;
    let again_name = source_name(&again, "app");
    assert_ne!(again_name, name, "a namesake has a series of its own");
    assert!(
        routed[&again_name] < lines_before,
        "the new pod's origin counts its own lines ({} now, {lines_before} before): {routed:?}",
        routed[&again_name]
    );
    daemon.stop().await;

    let positions = Store::open(&lab.dir.path().join("state.db"))
        .unwrap()
        .load_positions()
        .unwrap();
    let old_key = Origin::Pod(third.container.clone()).position_key();
    let new_key = Origin::Pod(fresh.container.clone()).position_key();
    assert!(
        !positions.contains_key(&old_key),
        "the deleted pod's position is forgotten: {:?}",
        positions.keys()
    );
    assert!(positions.contains_key(&new_key), "{:?}", positions.keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_logjail_still_lists_an_annotation_jails_ban_and_counts_no_line_twice() {
    let lab = Lab::start().await;
    let jails = "  {}";
    let mut daemon = lab.start_daemon(jails);
    daemon.wait_for_socket().await;
    let spec = PodSpec::new("shop", "app-0")
        .annotation("logjail.io/jail.web.filter", "podauth")
        .annotation("logjail.io/jail.web.port", "8080")
        .annotation("logjail.io/jail.web.maxretry", "3");
    let (_pod, id) = lab.pod(spec).await;
    lab.failures(&id, "192.0.2.40", 3).await;
    lab.failures(&id, "192.0.2.41", 1).await;
    let judged = pod_failures_until(&mut daemon, "app-0", "web", ip("192.0.2.41")).await;
    let counts: Vec<(IpAddr, Option<u32>)> = judged.iter().map(|f| (f.host, f.count())).collect();
    assert_eq!(
        counts,
        [
            (ip("192.0.2.40"), Some(1)),
            (ip("192.0.2.40"), Some(2)),
            (ip("192.0.2.40"), Some(3)),
            (ip("192.0.2.41"), Some(1)),
        ]
    );
    daemon.stop().await;

    let mut daemon = lab.start_daemon(jails);
    daemon.wait_for_socket().await;
    // Restored from the store at start, before the pod is looked at again.
    let banned = daemon.cli(&["banned"]).await;
    let banned = String::from_utf8_lossy(&banned.stdout).into_owned();
    assert_eq!(banned.lines().count(), 1, "{banned}");
    assert!(banned.starts_with("web\t192.0.2.40\t"), "{banned}");
    assert_eq!(
        log_lines_with(&["label-defined jail restored from the store", "web"]).len(),
        1,
        "{}",
        log_tail()
    );
    // The pod defines its jail again; a new line is the first failure judged after the
    // restart: nothing read before it is counted again.
    lab.failures(&id, "192.0.2.42", 1).await;
    let after = pod_failures_until(&mut daemon, "app-0", "web", ip("192.0.2.42")).await;
    assert_eq!(after.len(), 1, "old lines judged again: {after:?}");
    assert_eq!(after[0].count(), Some(1));
    let status = daemon.cli(&["status", "web"]).await;
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains("192.0.2.40"), "{status}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_routes_pods_to_a_pods_jail_the_file_added() {
    let lab = Lab::start().await;
    let first = r#"  first:
    filter: podauth
    maxretry: 5
    bantime: 1h
    sources:
      - pods: {namespace: shop, pod: "web-*"}"#;
    let mut daemon = lab.start_daemon(first);
    daemon.wait_for_socket().await;
    let (web, web_id) = lab.pod(PodSpec::new("shop", "web-0")).await;
    let (api, api_id) = lab.pod(PodSpec::new("shop", "api-0")).await;
    lab.failures(&web_id, "192.0.2.50", 1).await;
    let before = next_pod_failure(&mut daemon, "web-0").await;
    assert_eq!(before.jail, "first");
    lab.wait_routed("web-0 routed", |routed| {
        routed.contains_key(&source_name(&web, "app"))
    })
    .await;
    assert!(!lab.routed().await.contains_key(&source_name(&api, "app")));

    let late = format!(
        "{first}\n  late:\n    filter: podauth\n    maxretry: 2\n    bantime: 1h\n    sources:\n      - pods: {{namespace: shop}}"
    );
    std::fs::write(lab.config_path(), lab.config_text(&late)).unwrap();
    let reload = daemon.cli(&["reload"]).await;
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    assert!(
        String::from_utf8_lossy(&reload.stdout).contains("added: late"),
        "{}",
        String::from_utf8_lossy(&reload.stdout)
    );

    // A pod already read: its next line counts in both jails.
    lab.failures(&web_id, "192.0.2.51", 1).await;
    let mut jails: Vec<String> = Vec::new();
    while jails.len() < 2 {
        let failure = next_pod_failure(&mut daemon, "web-0").await;
        if failure.host == ip("192.0.2.51") {
            jails.push(failure.jail);
        }
    }
    jails.sort();
    assert_eq!(jails, ["first", "late"]);
    // A pod no jail read before the reload is read now.
    lab.failures(&api_id, "192.0.2.52", 2).await;
    let judged = pod_failures_until(&mut daemon, "api-0", "late", ip("192.0.2.52")).await;
    assert!(judged.iter().all(|f| f.jail == "late"), "{judged:?}");
    banned_from(&mut daemon, "late", ip("192.0.2.52")).await;
    daemon.stop().await;
}
