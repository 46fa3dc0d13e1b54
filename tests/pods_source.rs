//! The pods source against a real containerd (started by the test, CRI plugin on) running
//! host-network pods as the kubelet would, writing real CRI log files: new pods, restarts,
//! deletion, rotation through `ReopenContainerLog`, lines over 16 KiB, a restarted follower,
//! and pod annotations read through the real CRI socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use logjail::config::DefaultsConfig;
use logjail::filter::envelope::{Decoder, EnvelopeKind, MAX_LINE_BYTES, Stream};
use logjail::messages::{LineBatch, Origin, Position, RawLine};
use logjail::routing::labels::LabelContext;
use logjail::source::pods::annotations;
use logjail::source::pods::cri::SandboxState;
use logjail::source::pods::discovery::{self, PodSourceSettings, PodWiring, directory_origin};
use logjail::source::pods::{PodCommand, PodContainer, PodEvent};
use logjail::source::watch::FileWatcher;
use support::containerd::{Containerd, Pod, PodSpec};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest wait for something that takes the runtime and the source moments.
const WAIT: Duration = Duration::from_secs(15);

/// What the source handed on, as the matcher would see it.
#[derive(Default)]
struct Seen {
    /// Raw lines by origin, in the order they came.
    lines: HashMap<Arc<Origin>, Vec<RawLine>>,
    /// The last position of each origin: what the matcher would store.
    positions: HashMap<String, Position>,
    events: Vec<String>,
    found: HashMap<Arc<Origin>, Arc<PodContainer>>,
    gone: Vec<(PodContainer, Option<Position>)>,
}

/// The pods source running on a log directory, with a stand-in for the daemon that follows
/// every container found and records what arrives.
struct Source {
    seen: Arc<Mutex<Seen>>,
    /// While `false`, the stand-in matcher takes no lines: the source is held up as by a busy
    /// matcher, and what it has not read yet stays in the files.
    taking: tokio::sync::watch::Sender<bool>,
    stop: CancellationToken,
    discovery: JoinHandle<()>,
    _commands: mpsc::Sender<PodCommand>,
}

impl Source {
    async fn start(containerd: &Containerd, positions: HashMap<String, Position>) -> Source {
        let stop = CancellationToken::new();
        let watcher = FileWatcher::start(stop.clone()).unwrap();
        // One batch in the queue: holding the stand-in matcher holds the source up at once.
        let (lines_tx, mut lines_rx) = mpsc::channel::<LineBatch>(1);
        let (taking, mut gate) = tokio::sync::watch::channel(true);
        let (events_tx, mut events_rx) = mpsc::channel::<PodEvent>(16);
        let (commands_tx, commands_rx) = mpsc::channel(4);
        let mut settings = PodSourceSettings::new(containerd.log_dir.clone());
        // Short safety polls: a missed wake-up shows as slowness, not as a pass.
        settings.safety_poll = Duration::from_secs(1);
        let wiring = PodWiring {
            lines: lines_tx,
            events: events_tx,
            watcher,
            origin_of: directory_origin(&containerd.log_dir),
        };
        let seen = Arc::new(Mutex::new(Seen::default()));
        let recorder = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                if gate.wait_for(|taking| *taking).await.is_err() {
                    break;
                }
                let Some(batch) = lines_rx.recv().await else {
                    break;
                };
                let mut seen = recorder.lock().unwrap();
                if let Some(position) = batch.lines.iter().rev().find_map(|l| l.position.clone()) {
                    seen.positions.insert(batch.origin.position_key(), position);
                }
                seen.lines
                    .entry(Arc::clone(&batch.origin))
                    .or_default()
                    .extend(batch.lines);
            }
        });
        let recorder = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Some(event) = events_rx.recv().await {
                let mut seen = recorder.lock().unwrap();
                match event {
                    PodEvent::Found {
                        container,
                        origin,
                        restart,
                        follow,
                        ..
                    } => {
                        seen.events
                            .push(format!("found {container} attempt {restart}"));
                        seen.found.insert(origin, container);
                        let _ = follow.send(true);
                    }
                    PodEvent::Restarted {
                        container, restart, ..
                    } => seen
                        .events
                        .push(format!("restarted {container} attempt {restart}")),
                    PodEvent::Gone {
                        container,
                        last_position,
                        ..
                    } => {
                        seen.events.push(format!("gone {container}"));
                        seen.gone.push(((*container).clone(), last_position));
                    }
                    PodEvent::Failed {
                        container, error, ..
                    } => seen.events.push(format!("failed {container}: {error}")),
                    PodEvent::StalePositions(keys) => {
                        seen.events.push(format!("stale {keys:?}"));
                    }
                }
            }
        });
        let discovery = tokio::spawn(discovery::run(
            settings,
            wiring,
            positions,
            commands_rx,
            stop.clone(),
        ));
        Source {
            seen,
            taking,
            stop,
            discovery,
            _commands: commands_tx,
        }
    }

    /// Holds up the source: no more lines are taken until [`Source::resume`].
    fn hold(&self) {
        self.taking.send_replace(false);
    }

    fn resume(&self) {
        self.taking.send_replace(true);
    }

    /// Stops the source; returns the positions the matcher would have stored.
    async fn stop(self) -> HashMap<String, Position> {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.discovery)
            .await
            .expect("discovery stops")
            .unwrap();
        let seen = self.seen.lock().unwrap();
        seen.positions.clone()
    }

    /// The container the lines of `pod`'s `container` came from, once found.
    fn origin_of(&self, pod: &Pod, container: &str) -> Option<(Arc<Origin>, Arc<PodContainer>)> {
        let seen = self.seen.lock().unwrap();
        seen.found
            .iter()
            .find(|(_, found)| {
                found.namespace == pod.spec.namespace
                    && found.pod == pod.spec.name
                    && found.uid == pod.spec.uid
                    && found.container == container
            })
            .map(|(origin, found)| (Arc::clone(origin), Arc::clone(found)))
    }

    fn raw_lines(&self, pod: &Pod, container: &str) -> Vec<RawLine> {
        let Some((origin, _)) = self.origin_of(pod, container) else {
            return Vec::new();
        };
        let seen = self.seen.lock().unwrap();
        seen.lines.get(&origin).cloned().unwrap_or_default()
    }

    /// The messages of one container, envelopes decoded and pieces joined as the matcher
    /// decodes them.
    fn messages(&self, pod: &Pod, container: &str) -> Vec<Message> {
        decode(&self.raw_lines(pod, container))
    }

    fn texts(&self, pod: &Pod, container: &str) -> Vec<String> {
        self.messages(pod, container)
            .into_iter()
            .map(|message| message.text)
            .collect()
    }

    fn events(&self) -> Vec<String> {
        self.seen.lock().unwrap().events.clone()
    }

    async fn wait_until(&self, what: &str, mut done: impl FnMut(&Source) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; events: {:?}",
                self.events()
            );
            // Polling what the source handed on, bounded by the deadline.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the container's messages end with `last`.
    async fn wait_for_text(&self, pod: &Pod, container: &str, last: &str) {
        self.wait_until(&format!("`{last}` from {container}"), |source| {
            source.texts(pod, container).iter().any(|text| text == last)
        })
        .await;
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Message {
    text: String,
    stream: Option<Stream>,
    envelope: EnvelopeKind,
}

fn decode(lines: &[RawLine]) -> Vec<Message> {
    let mut decoder = Decoder::new();
    lines
        .iter()
        .filter_map(|line| {
            decoder.push(&line.text).map(|record| Message {
                text: record.text.into_owned(),
                stream: record.stream,
                envelope: record.envelope,
            })
        })
        .collect()
}

/// `count` numbered lines `{prefix}-{n}` (from `first`), one every `pause` seconds (`"0"`: as
/// fast as the shell writes), then `{prefix}-done`.
fn numbered(prefix: &str, first: u32, count: u32, pause: &str) -> String {
    let pause = if pause == "0" {
        String::new()
    } else {
        format!(" sleep {pause};")
    };
    format!(
        "i={first}; while [ $i -lt {end} ]; do echo {prefix}-$i; i=$((i+1));{pause} done; echo {prefix}-done",
        end = first + count
    )
}

/// Asserts `got == wanted`, showing where they first differ (the lists are long).
#[track_caller]
fn assert_lines(got: &[String], wanted: &[String]) {
    if got == wanted {
        return;
    }
    let at = got
        .iter()
        .zip(wanted)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(wanted.len()));
    let around = |lines: &[String]| lines[at.saturating_sub(3)..(at + 3).min(lines.len())].to_vec();
    panic!(
        "{} lines, {} wanted; first difference at {at}: got {:?}, wanted {:?}",
        got.len(),
        wanted.len(),
        around(got),
        around(wanted)
    );
}

fn expected(prefix: &str, first: u32, count: u32) -> Vec<String> {
    (first..first + count)
        .map(|n| format!("{prefix}-{n}"))
        .chain([format!("{prefix}-done")])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_pods_are_found_and_read_with_namespace_pod_and_container() {
    let containerd = Containerd::start().await;
    // One pod before the source starts, one after: both are read from their start.
    let early = containerd.run_pod(PodSpec::new("shop", "web-0")).await;
    containerd
        .run_container(
            &early,
            "nginx",
            0,
            "echo 'GET / 200'; echo 'bad gateway' >&2; echo early-done; sleep 100000",
        )
        .await;
    let source = Source::start(&containerd, HashMap::new()).await;
    source.wait_for_text(&early, "nginx", "early-done").await;
    let late = containerd
        .run_pod(PodSpec::new("blog", "wordpress-7d9f8-x2x4z"))
        .await;
    containerd
        .run_container(
            &late,
            "wordpress",
            0,
            "echo late-1; echo late-done; sleep 100000",
        )
        .await;
    containerd
        .run_container(&late, "sidecar", 0, "echo sidecar-done; sleep 100000")
        .await;
    source.wait_for_text(&late, "wordpress", "late-done").await;
    source.wait_for_text(&late, "sidecar", "sidecar-done").await;

    let (_, container) = source.origin_of(&late, "wordpress").unwrap();
    assert_eq!(container.namespace, "blog");
    assert_eq!(container.pod, "wordpress-7d9f8-x2x4z");
    assert_eq!(container.uid, late.spec.uid);
    assert_eq!(container.container, "wordpress");
    assert_eq!(source.texts(&late, "wordpress"), ["late-1", "late-done"]);
    assert_eq!(source.texts(&late, "sidecar"), ["sidecar-done"]);
    let early_messages = source.messages(&early, "nginx");
    let streams: Vec<(&str, Option<Stream>)> = early_messages
        .iter()
        .map(|message| (message.text.as_str(), message.stream))
        .collect();
    // The runtime copies stdout and stderr apart: their relative order is not kept.
    assert_eq!(streams.len(), 3, "{streams:?}");
    assert!(streams.contains(&("GET / 200", Some(Stream::Stdout))));
    assert!(streams.contains(&("bad gateway", Some(Stream::Stderr))));
    assert!(
        early_messages
            .iter()
            .all(|m| m.envelope == EnvelopeKind::Cri)
    );
    let events = source.events();
    assert!(
        events.contains(
            &"found pod blog/wordpress-7d9f8-x2x4z container wordpress attempt 0".to_string()
        ),
        "{events:?}"
    );
    source.stop().await;
}

/// Waits until the file at `path` ends with the CRI line of `last`, then kills the container:
/// containerd 1.6 can lose what a container wrote just before it exited (it closes the pipe
/// before draining it), which no reader of the file could see, so a test that needs all of a
/// container's output in its file kills it only once it is there.
async fn kill_once_written(
    containerd: &Containerd,
    path: &std::path::Path,
    container_id: &str,
    last: &str,
) {
    let suffix = format!(" F {last}\n");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(path).is_ok_and(|text| text.ends_with(&suffix)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for `{last}` in {}",
            path.display()
        );
        // Polling the file the runtime writes, bounded by the deadline.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    containerd.stop_container(container_id, 0).await;
    containerd.wait_exited(container_id).await;
}

/// The size of a file (0 when it does not exist yet).
fn size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_is_read_after_the_old_attempt_without_loss() {
    let containerd = Containerd::start().await;
    let pod = containerd.run_pod(PodSpec::new("shop", "api-0")).await;
    let source = Source::start(&containerd, HashMap::new()).await;
    let first = containerd
        .run_container(
            &pod,
            "api",
            0,
            &format!("{}; sleep 100000", numbered("a0", 0, 20_000, "0")),
        )
        .await;
    source
        .wait_until("the first lines", |source| {
            !source.texts(&pod, "api").is_empty()
        })
        .await;
    // A busy matcher holds the source up: most of 0.log is still unread when the container
    // dies and the kubelet starts attempt 1.
    source.hold();
    kill_once_written(&containerd, &pod.log_file("api", 0), &first, "a0-done").await;
    containerd
        .run_container(&pod, "api", 1, &numbered("a1", 0, 500, "0"))
        .await;
    source
        .wait_until("the restart", |source| {
            source
                .events()
                .contains(&"restarted pod shop/api-0 container api attempt 1".to_string())
        })
        .await;
    let read_when_restarted = source.texts(&pod, "api").len();
    assert!(
        read_when_restarted < 20_000,
        "the test needs the old attempt unread at the restart ({read_when_restarted} lines read)"
    );
    source.resume();
    source.wait_for_text(&pod, "api", "a1-done").await;
    let mut wanted = expected("a0", 0, 20_000);
    wanted.extend(expected("a1", 0, 500));
    assert_lines(&source.texts(&pod, "api"), &wanted);
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_is_read_to_its_end_then_let_go() {
    let containerd = Containerd::start().await;
    let pod = containerd.run_pod(PodSpec::new("shop", "cart-0")).await;
    let source = Source::start(&containerd, HashMap::new()).await;
    let on_term = numbered("stopping", 0, 5000, "0");
    let id = containerd
        .run_container(
            &pod,
            "cart",
            0,
            // After its last lines it waits to be killed (see `kill_once_written`).
            &format!(
                "trap '{on_term}; exec sleep 100000' TERM; echo started; \
                 while true; do sleep 0.1; done"
            ),
        )
        .await;
    source.wait_for_text(&pod, "cart", "started").await;
    // Held up, the source has not read the last lines when the pod's files are deleted: it
    // still reads them from the files it has open.
    source.hold();
    // The kubelet stops the containers with their grace period (SIGTERM, SIGKILL at its
    // end), then removes the sandbox and the pod's log folder.
    let stopping = {
        let socket_client = containerd.client().await;
        let id = id.clone();
        tokio::spawn(async move {
            let mut client = socket_client;
            client
                .runtime()
                .stop_container(k8s_cri::v1::StopContainerRequest {
                    container_id: id,
                    timeout: 30,
                })
                .await
        })
    };
    kill_once_written(&containerd, &pod.log_file("cart", 0), &id, "stopping-done").await;
    stopping.await.unwrap().unwrap();
    containerd.delete_pod(&pod).await;
    assert!(!pod.log_directory.exists());
    source.resume();
    source
        .wait_until("the pod to be let go", |source| {
            !source.seen.lock().unwrap().gone.is_empty()
        })
        .await;
    let mut wanted = vec!["started".to_string()];
    wanted.extend(expected("stopping", 0, 5000));
    assert_lines(&source.texts(&pod, "cart"), &wanted);
    let (container, last_position) = source.seen.lock().unwrap().gone[0].clone();
    assert_eq!(container.pod, "cart-0");
    let Some(Position::File { offset, .. }) = last_position else {
        panic!("no file position: {last_position:?}");
    };
    let raw = source.raw_lines(&pod, "cart");
    let read: usize = raw.iter().map(|line| line.text.len() + 1).sum();
    assert_eq!(
        offset, read as u64,
        "the position is just past the last line read"
    );
    // Nothing of the deleted files is held open any more.
    let deleted_open = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .any(|target| target.starts_with(&pod.log_directory));
    assert!(!deleted_open, "a deleted pod's log file is still open");
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_through_reopen_container_log_loses_nothing_and_reads_nothing_twice() {
    let containerd = Containerd::start().await;
    let pod = containerd.run_pod(PodSpec::new("shop", "web-1")).await;
    let source = Source::start(&containerd, HashMap::new()).await;
    let id = containerd
        .run_container(
            &pod,
            "web",
            0,
            &format!("{}; sleep 100000", numbered("r", 0, 600, "0.005")),
        )
        .await;
    let current = pod.log_file("web", 0);
    let mut rotated = Vec::new();
    for turn in 1..=2 {
        source
            .wait_until("lines", |source| {
                source.texts(&pod, "web").len() >= 100 * turn
            })
            .await;
        // Held up, the source leaves lines unread in the file that is renamed, and the
        // runtime writes more to it before it reopens the log.
        source.hold();
        let held_at = size(&current);
        source
            .wait_until("unread lines", |_| size(&current) > held_at + 200)
            .await;
        rotated.push(containerd.rotate(&pod, "web", 0, &id).await);
        source
            .wait_until("lines in the new file", |_| size(&current) > 200)
            .await;
        source.resume();
    }
    // The kubelet compresses the older rotated file (never the newest one).
    let compressed = containerd.compress(&rotated[0]);
    source.wait_for_text(&pod, "web", "r-done").await;
    assert_lines(&source.texts(&pod, "web"), &expected("r", 0, 600));
    let files: BTreeSet<String> = std::fs::read_dir(pod.log_directory.join("web"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files.len(),
        3,
        "0.log, a rotated file and a compressed one: {files:?}"
    );
    assert!(files.contains("0.log"));
    assert!(compressed.exists());
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_over_16_kib_arrive_in_pieces_and_are_joined_up_to_the_bound() {
    let containerd = Containerd::start().await;
    let pod = containerd.run_pod(PodSpec::new("shop", "long-0")).await;
    let source = Source::start(&containerd, HashMap::new()).await;
    let over_bound = MAX_LINE_BYTES + 64 * 1024;
    let script = format!(
        "head -c 20480 /dev/zero | tr '\\0' x; echo; \
         head -c {over_bound} /dev/zero | tr '\\0' y; echo; \
         echo after; sleep 100000"
    );
    containerd.run_container(&pod, "long", 0, &script).await;
    source.wait_for_text(&pod, "long", "after").await;
    let texts = source.texts(&pod, "long");
    // The line past the bound is dropped whole, as a Docker line of that length is.
    assert_eq!(
        texts.len(),
        2,
        "{:?}",
        texts.iter().map(String::len).collect::<Vec<_>>()
    );
    assert_eq!(texts[0], "x".repeat(20480));
    assert_eq!(texts[1], "after");
    let raw = source.raw_lines(&pod, "long");
    let tags: Vec<&str> = raw
        .iter()
        .take(2)
        .map(|line| line.text.split(' ').nth(2).unwrap())
        .collect();
    assert_eq!(
        tags,
        ["P", "F"],
        "the runtime split the 20 KB line at 16 KiB"
    );
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_resumes_at_its_stored_position_across_a_container_restart() {
    let containerd = Containerd::start().await;
    let pod = containerd.run_pod(PodSpec::new("shop", "queue-0")).await;
    let source = Source::start(&containerd, HashMap::new()).await;
    let first = containerd
        .run_container(
            &pod,
            "worker",
            0,
            &format!("{}; sleep 100000", numbered("w0", 0, 100, "0.02")),
        )
        .await;
    source
        .wait_until("10 lines", |source| {
            source.texts(&pod, "worker").len() >= 10
        })
        .await;
    let before = source.texts(&pod, "worker");
    let positions = source.stop().await;
    // While logjail is down the container goes on writing, dies and is restarted.
    let log = pod.log_file("worker", 0);
    kill_once_written(&containerd, &log, &first, "w0-done").await;
    containerd
        .run_container(
            &pod,
            "worker",
            1,
            &format!("{}; sleep 100000", numbered("w1", 0, 20, "0")),
        )
        .await;
    let source = Source::start(&containerd, positions).await;
    source.wait_for_text(&pod, "worker", "w1-done").await;
    let after = source.texts(&pod, "worker");
    let mut all = before;
    all.extend(after);
    let mut wanted = expected("w0", 0, 100);
    wanted.extend(expected("w1", 0, 20));
    assert_lines(&all, &wanted);
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotations_are_read_through_the_cri_socket_and_a_bad_one_skips_only_its_jail() {
    let containerd = Containerd::start().await;
    let spec = PodSpec::new("blog", "wordpress-0")
        .annotation("logjail.io/jails", "sshd,wp")
        .annotation("logjail.io/jail.wp.filter", "wordpress")
        .annotation("logjail.io/jail.wp.maxretry", "3")
        .annotation("logjail.io/jail.wp.ignoreip", "10.0.0.0/8, 192.0.2.7")
        .annotation("logjail.io/jail.bad.filter", "wordpress")
        .annotation("logjail.io/jail.bad.maxretry", "lots")
        .annotation("kubernetes.io/config.source", "api")
        .label("logjail.io/enable", "true")
        .label("app", "wordpress");
    let pod = containerd.run_pod(spec).await;
    let other = containerd.run_pod(PodSpec::new("shop", "plain-0")).await;
    let mut client = containerd.client().await;
    let version = client.version().await.unwrap();
    assert_eq!(version.name, "containerd");
    assert_eq!(version.api_version, "v1");
    let pods = client.pods().await.unwrap();
    assert_eq!(pods.len(), 2, "{pods:?}");
    let found = pods
        .iter()
        .find(|sandbox| sandbox.uid == pod.spec.uid)
        .unwrap();
    assert_eq!(found.namespace, "blog");
    assert_eq!(found.name, "wordpress-0");
    assert_eq!(found.state, SandboxState::Ready);
    assert_eq!(found.annotations["logjail.io/jails"], "sshd,wp");
    assert_eq!(found.labels["logjail.io/enable"], "true");
    let plain = pods
        .iter()
        .find(|sandbox| sandbox.uid == other.spec.uid)
        .unwrap();
    assert!(!annotations::has_jail_words(plain));
    let status = client.pod_status(&pod.sandbox_id).await.unwrap();
    assert_eq!(
        status.log_directory.as_deref(),
        Some(pod.log_directory.as_path())
    );
    assert_eq!(status.annotations, found.annotations);

    let defaults = DefaultsConfig::default();
    let filters: BTreeSet<String> = ["wordpress", "sshd"].map(String::from).into();
    let yaml_jails = BTreeSet::from(["sshd".to_string()]);
    let context = LabelContext {
        defaults: &defaults,
        filters: &filters,
        yaml_jails: &yaml_jails,
        chain_prefix: "LJ",
        host_network: true,
    };
    let jails = annotations::parse(found, &context);
    assert_eq!(jails.parsed.enable, Some(true));
    assert_eq!(jails.parsed.jails, ["sshd", "wp"]);
    let defined: Vec<&str> = jails
        .parsed
        .defined
        .iter()
        .map(|j| j.name.as_str())
        .collect();
    assert_eq!(defined, ["wp"], "the good jail survives the bad one");
    assert_eq!(jails.parsed.defined[0].maxretry, 3);
    assert_eq!(jails.errors.len(), 1, "{:?}", jails.errors);
    let error = &jails.errors[0];
    assert_eq!(
        (
            error.namespace.as_str(),
            error.pod.as_str(),
            error.key.as_str()
        ),
        ("blog", "wordpress-0", "logjail.io/jail.bad.maxretry")
    );
    let message = error.to_string();
    assert!(
        message
            .starts_with("pod blog/wordpress-0: annotation `logjail.io/jail.bad.maxretry: lots`: "),
        "{message}"
    );
    assert!(message.ends_with("(jail \"bad\" skipped)"), "{message}");
}
