//! The file source against real files and real inotify: appends, partial lines, rotation by
//! rename and by copytruncate, resume, files that come and go, bursts, shutdown, polling.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use logjail::messages::{LineBatch, Origin, Position, RawLine};
use logjail::source::MAX_BATCH_LINES;
use logjail::source::file::{FileSourceError, FollowConfig, RotatedName, follow};
use logjail::source::watch::FileWatcher;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// Longest wait for something that should happen within milliseconds.
const WAIT: Duration = Duration::from_secs(10);

/// A safety poll that never fires during a test: lines that arrive were woken by the watcher.
const NEVER: Duration = Duration::from_secs(3600);

fn config(path: &Path) -> FollowConfig {
    let origin = Arc::new(Origin::File {
        path: path.to_path_buf(),
    });
    let mut config = FollowConfig::new(origin, path.to_path_buf());
    config.safety_poll = NEVER;
    config
}

fn watcher() -> FileWatcher {
    let watcher = FileWatcher::start(CancellationToken::new()).unwrap();
    assert!(
        !watcher.is_polling(),
        "inotify is available on the test machine"
    );
    watcher
}

struct Follower {
    rx: mpsc::Receiver<LineBatch>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), FileSourceError>>,
}

fn start(config: FollowConfig, watcher: &FileWatcher) -> Follower {
    start_with_capacity(config, watcher, 8)
}

fn start_with_capacity(config: FollowConfig, watcher: &FileWatcher, capacity: usize) -> Follower {
    let (tx, rx) = mpsc::channel(capacity);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(follow(config, watcher.clone(), tx, shutdown.clone()));
    Follower { rx, shutdown, task }
}

impl Follower {
    /// The next `count` lines; fails if they do not come, or if a batch brings more.
    async fn lines(&mut self, count: usize) -> Vec<RawLine> {
        let mut lines = Vec::new();
        while lines.len() < count {
            let batch = timeout(WAIT, self.rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out with {} of {count} lines: {lines:?}", lines.len())
                })
                .expect("follower ended");
            assert!(!batch.lines.is_empty(), "empty batch");
            assert!(batch.lines.len() <= MAX_BATCH_LINES);
            lines.extend(batch.lines);
        }
        assert_eq!(lines.len(), count, "more lines than expected: {lines:?}");
        lines
    }

    async fn texts(&mut self, count: usize) -> Vec<String> {
        texts(&self.lines(count).await)
    }

    /// Writes a marker line and checks that it is the very next line: nothing was handed on
    /// twice or late before it.
    async fn nothing_more_before_marker(&mut self, path: &Path) {
        append(path, b"marker\n");
        assert_eq!(self.texts(1).await, ["marker"]);
    }

    async fn stop(self) -> Result<(), FileSourceError> {
        self.shutdown.cancel();
        timeout(WAIT, self.task)
            .await
            .expect("follower did not stop")
            .unwrap()
    }
}

fn append(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
}

fn texts(lines: &[RawLine]) -> Vec<String> {
    lines.iter().map(|line| line.text.clone()).collect()
}

fn identity(path: &Path) -> (u64, u64) {
    let metadata = fs::metadata(path).unwrap();
    (metadata.dev(), metadata.ino())
}

fn file_position(line: &RawLine) -> (u64, u64, u64) {
    match line.position {
        Some(Position::File {
            device,
            inode,
            offset,
            ..
        }) => (device, inode, offset),
        ref other => panic!("not a file position: {other:?}"),
    }
}

fn log_in(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".1");
    PathBuf::from(name)
}

#[tokio::test]
async fn appended_lines_arrive_with_the_position_just_past_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "auth.log");
    File::create(&path).unwrap();
    let watcher = watcher();
    let mut follower = start(config(&path), &watcher);

    append(&path, b"one\ntwo\n");
    let lines = follower.lines(2).await;
    assert_eq!(texts(&lines), ["one", "two"]);
    let (device, inode) = identity(&path);
    assert_eq!(file_position(&lines[0]), (device, inode, 4));
    assert_eq!(file_position(&lines[1]), (device, inode, 8));

    append(&path, b"three\n");
    let lines = follower.lines(1).await;
    assert_eq!(texts(&lines), ["three"]);
    assert_eq!(file_position(&lines[0]), (device, inode, 14));
    follower.stop().await.unwrap();
}

#[tokio::test]
async fn existing_lines_are_read_from_the_start_of_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "auth.log");
    append(&path, b"old 1\nold 2\nhalf of a li");
    let watcher = watcher();
    let mut follower = start(config(&path), &watcher);

    assert_eq!(follower.texts(2).await, ["old 1", "old 2"]);
    append(&path, b"ne\nnew\n");
    assert_eq!(follower.texts(2).await, ["half of a line", "new"]);
    follower.stop().await.unwrap();
}

#[tokio::test]
async fn a_partial_line_is_kept_until_completed() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "app.log");
    File::create(&path).unwrap();
    let watcher = watcher();
    let mut follower = start(config(&path), &watcher);

    append(&path, b"first\nsecond ha");
    assert_eq!(follower.texts(1).await, ["first"]);
    append(&path, b"lf\n");
    let lines = follower.lines(1).await;
    assert_eq!(texts(&lines), ["second half"]);
    assert_eq!(file_position(&lines[0]).2, 18);
    follower.stop().await.unwrap();
}

#[tokio::test]
async fn invalid_utf8_is_replaced_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "app.log");
    File::create(&path).unwrap();
    let watcher = watcher();
    let mut follower = start(config(&path), &watcher);

    append(&path, b"user \xff\xfe from 1.2.3.4\n\xc3\xa9t\xc3\xa9\n");
    assert_eq!(
        follower.texts(2).await,
        ["user \u{fffd}\u{fffd} from 1.2.3.4", "été"]
    );
    follower.stop().await.unwrap();
}

#[tokio::test]
async fn rename_rotation_while_running_loses_no_line_written_to_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "auth.log");
    append(&path, b"a1\n");
    let watcher = watcher();
    let mut follower = start(config(&path), &watcher);
    assert_eq!(follower.texts(1).await, ["a1"]);
    let old = identity(&path);

    fs::rename(&path, rotated(&path)).unwrap();
    File::create(&path).unwrap();
    // The daemon has not reopened its log yet: it still writes to the renamed file.
    append(&rotated(&path), b"late\n");
    append(&path, b"b1\n");

    let lines = follower.lines(2).await;
    assert_eq!(texts(&lines), ["late", "b1"]);
    assert_eq!(file_position(&lines[0]), (old.0, old.1, 8));
    let new = identity(&path);
    assert_eq!(file_position(&lines[1]), (new.0, new.1, 3));

    // And again: the new file is followed like the first one.
    fs::rename(&path, rotated(&path)).unwrap();
    append(&path, b"c1\n");
    assert_eq!(follower.texts(1).await, ["c1"]);
    follower.nothing_more_before_marker(&path).await;
    follower.stop().await.unwrap();
}

#[tokio::test]
async fn copytruncate_rotation_starts_over_at_the_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "app.log");
    append(&path, b"a rather long first line\nsecond line\n");
    let watcher = watcher();
    let mut follower = start(config(&path), &watcher);
    assert_eq!(
        follower.texts(2).await,
        ["a rather long first line", "second line"]
    );

    fs::copy(&path, rotated(&path)).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&path, b"new\n");

    let lines = follower.lines(1).await;
    assert_eq!(texts(&lines), ["new"]);
    assert_eq!(file_position(&lines[0]).2, 4);
    follower.nothing_more_before_marker(&path).await;
    follower.stop().await.unwrap();
}

#[tokio::test]
async fn resume_continues_right_after_the_stored_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "auth.log");
    append(&path, b"l1\nl2\nl3\n");
    let watcher = watcher();
    let mut first_run = start(config(&path), &watcher);
    let lines = first_run.lines(3).await;
    first_run.stop().await.unwrap();
    let after_l1 = lines[0].position.clone();
    let after_l3 = lines[2].position.clone();

    append(&path, b"l4 written while down\nl5\n");

    let mut resumed = config(&path);
    resumed.resume = after_l3;
    // A stored position wins over "start at the end".
    resumed.start_at_end_if_new = true;
    let mut second_run = start(resumed, &watcher);
    assert_eq!(second_run.texts(2).await, ["l4 written while down", "l5"]);
    second_run.nothing_more_before_marker(&path).await;
    second_run.stop().await.unwrap();

    let mut from_l1 = config(&path);
    from_l1.resume = after_l1;
    let mut third_run = start(from_l1, &watcher);
    assert_eq!(
        third_run.texts(5).await,
        ["l2", "l3", "l4 written while down", "l5", "marker"]
    );
    third_run.stop().await.unwrap();
}

/// Reads `l1`, `l2` in a first run and returns the position after `l2`.
async fn first_run_position(path: &Path, watcher: &FileWatcher) -> Option<Position> {
    append(path, b"l1\nl2\n");
    let mut first_run = start(config(path), watcher);
    let lines = first_run.lines(2).await;
    first_run.stop().await.unwrap();
    lines[1].position.clone()
}

#[tokio::test]
async fn resume_after_rotation_while_down_reads_the_rest_of_the_old_file_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "abc-json.log");
    let watcher = watcher();
    let stored = first_run_position(&path, &watcher).await;

    append(&path, b"l3 before rotation\n");
    fs::rename(&path, rotated(&path)).unwrap();
    append(&path, b"n1\n");

    let mut resumed = config(&path);
    resumed.resume = stored;
    let mut second_run = start(resumed, &watcher);
    let lines = second_run.lines(2).await;
    assert_eq!(texts(&lines), ["l3 before rotation", "n1"]);
    let new = identity(&path);
    assert_eq!(file_position(&lines[1]), (new.0, new.1, 3));
    second_run.nothing_more_before_marker(&path).await;
    second_run.stop().await.unwrap();
}

#[tokio::test]
async fn resume_finds_a_rotated_file_under_another_name_by_its_inode() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "auth.log");
    let watcher = watcher();
    let stored = first_run_position(&path, &watcher).await;

    append(&path, b"l3 before rotation\n");
    fs::rename(&path, log_in(&dir, "auth.log-20261126")).unwrap();
    append(&path, b"n1\n");

    let mut resumed = config(&path);
    resumed.resume = stored;
    resumed.rotated_name = RotatedName::DotOne;
    let mut second_run = start(resumed, &watcher);
    assert_eq!(second_run.texts(2).await, ["l3 before rotation", "n1"]);
    second_run.nothing_more_before_marker(&path).await;
    second_run.stop().await.unwrap();
}

#[tokio::test]
async fn resume_when_the_old_file_is_gone_reads_the_new_one_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "auth.log");
    let watcher = watcher();
    let stored = first_run_position(&path, &watcher).await;

    // Held open, the old inode cannot be reused by the new file, which would then pass for
    // the old one: a file's identity is its device and inode only.
    let _old_still_open = File::open(&path).unwrap();
    fs::remove_file(&path).unwrap();
    append(&path, b"n1\nn2\n");

    let mut resumed = config(&path);
    resumed.resume = stored;
    let mut second_run = start(resumed, &watcher);
    assert_eq!(second_run.texts(2).await, ["n1", "n2"]);
    second_run.nothing_more_before_marker(&path).await;
    second_run.stop().await.unwrap();
}

/// A file deleted while logjail was down can leave its inode number to a new file at the
/// same path (file systems reuse free inodes). The stored position then names the new file's
/// identity; its first bytes tell it from the old one. Which inode a file system hands out
/// cannot be chosen, so the stored position is made to carry the new file's identity with
/// the old file's beginning, exactly what reuse leaves behind.
#[tokio::test]
async fn resume_when_a_new_file_got_the_old_inode_reads_it_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "auth.log");
    let watcher = watcher();
    let stored = first_run_position(&path, &watcher).await;
    let Some(Position::File { offset, head, .. }) = stored else {
        panic!("not a file position: {stored:?}");
    };
    assert_eq!(
        &head[..],
        b"l1\nl2\n",
        "the position keeps the file's first bytes"
    );

    fs::remove_file(&path).unwrap();
    append(&path, b"n1 of the new file\nn2\n");
    let (device, inode) = identity(&path);
    let reused = |head: std::sync::Arc<[u8]>| Position::File {
        device,
        inode,
        offset,
        head,
    };

    let mut resumed = config(&path);
    resumed.resume = Some(reused(head));
    let mut second_run = start(resumed, &watcher);
    assert_eq!(second_run.texts(2).await, ["n1 of the new file", "n2"]);
    second_run.nothing_more_before_marker(&path).await;
    second_run.stop().await.unwrap();

    // A position stored before heads were kept has none: the file is taken as the same one,
    // as before (resumed at the offset).
    let mut unknown = config(&path);
    unknown.resume = Some(reused(std::sync::Arc::from(&[][..])));
    let mut third_run = start(unknown, &watcher);
    assert_eq!(
        third_run.texts(3).await,
        ["the new file", "n2", "marker"],
        "read from the stored offset, mid-line"
    );
    third_run.stop().await.unwrap();
}

#[tokio::test]
async fn resume_after_truncation_while_down_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "app.log");
    let watcher = watcher();
    let stored = first_run_position(&path, &watcher).await;

    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&path, b"x\n");

    let mut resumed = config(&path);
    resumed.resume = stored;
    let mut second_run = start(resumed, &watcher);
    assert_eq!(second_run.texts(1).await, ["x"]);
    second_run.nothing_more_before_marker(&path).await;
    second_run.stop().await.unwrap();
}

#[tokio::test]
async fn a_file_that_does_not_exist_yet_is_waited_for_and_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "auth.log");
    let watcher = watcher();
    let mut follower = start(config(&path), &watcher);

    append(&path, b"first\nsecond\n");
    assert_eq!(follower.texts(2).await, ["first", "second"]);
    follower.stop().await.unwrap();
}

#[tokio::test]
async fn a_deleted_file_is_followed_again_when_re_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "auth.log");
    append(&path, b"before\n");
    let watcher = watcher();
    let mut follower = start(config(&path), &watcher);
    assert_eq!(follower.texts(1).await, ["before"]);

    fs::remove_file(&path).unwrap();
    append(&path, b"after\n");
    let lines = follower.lines(1).await;
    assert_eq!(texts(&lines), ["after"]);
    let new = identity(&path);
    assert_eq!(file_position(&lines[0]), (new.0, new.1, 6));
    follower.stop().await.unwrap();
}

#[tokio::test]
async fn a_burst_of_200k_lines_arrives_complete_and_in_order() {
    const LINES: usize = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "burst.log");
    File::create(&path).unwrap();
    let watcher = watcher();
    let mut follower = start(config(&path), &watcher);

    let mut expected = Vec::with_capacity(LINES);
    let mut bytes = Vec::new();
    for number in 0..LINES {
        let line = format!(
            "Failed password for root from 10.0.{}.{} line {number}",
            number / 256 % 256,
            number % 256
        );
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        expected.push(line);
    }
    // Written in pieces that end inside lines, as a writer flushing its buffer does.
    for piece in bytes.chunks(100_003) {
        append(&path, piece);
    }

    let started = Instant::now();
    let mut lines = Vec::with_capacity(LINES);
    while lines.len() < LINES {
        let batch = timeout(Duration::from_secs(60), follower.rx.recv())
            .await
            .expect("burst not complete in time")
            .unwrap();
        assert!(!batch.lines.is_empty() && batch.lines.len() <= MAX_BATCH_LINES);
        lines.extend(batch.lines);
    }
    let elapsed = started.elapsed();
    assert_eq!(lines.len(), LINES);
    assert!(
        texts(&lines) == expected,
        "lines differ from what was written"
    );
    let offsets: Vec<u64> = lines.iter().map(|line| file_position(line).2).collect();
    assert!(offsets.windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(offsets.last().copied(), Some(bytes.len() as u64));
    eprintln!("{LINES} lines in {elapsed:?}");
    follower.nothing_more_before_marker(&path).await;
    follower.stop().await.unwrap();
}

#[tokio::test]
async fn lines_arrive_within_milliseconds() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "auth.log");
    File::create(&path).unwrap();
    let watcher = watcher();
    let mut follower = start(config(&path), &watcher);

    let mut latencies = Vec::new();
    for number in 0..20 {
        let written = Instant::now();
        append(&path, format!("line {number}\n").as_bytes());
        assert_eq!(follower.texts(1).await, [format!("line {number}")]);
        latencies.push(written.elapsed());
    }
    latencies.sort();
    // The median, so that one hiccup of a loaded test machine does not fail the test; a
    // follower that waited for its safety poll would take an hour.
    assert!(
        latencies[latencies.len() / 2] < Duration::from_millis(50),
        "latencies: {latencies:?}"
    );
    follower.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_ends_followers_promptly_whatever_they_wait_for() {
    let dir = tempfile::tempdir().unwrap();
    let watcher = watcher();

    let waiting_for_file = start(config(&log_in(&dir, "missing.log")), &watcher);

    let idle_path = log_in(&dir, "idle.log");
    append(&idle_path, b"one\n");
    let mut idle = start(config(&idle_path), &watcher);
    assert_eq!(idle.texts(1).await, ["one"]);

    // A channel of one batch and nobody receiving after the first: the follower ends up
    // waiting for room.
    let busy_path = log_in(&dir, "busy.log");
    append(&busy_path, "x\n".repeat(20 * MAX_BATCH_LINES).as_bytes());
    let mut blocked = start_with_capacity(config(&busy_path), &watcher, 1);
    timeout(WAIT, blocked.rx.recv()).await.unwrap().unwrap();

    waiting_for_file.stop().await.unwrap();
    idle.stop().await.unwrap();
    blocked.stop().await.unwrap();
}

#[tokio::test]
async fn a_follower_ends_when_its_receiver_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "app.log");
    append(&path, b"one\n");
    let watcher = watcher();
    let Follower { rx, task, .. } = start(config(&path), &watcher);
    drop(rx);
    timeout(WAIT, task).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn a_directory_is_not_a_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "not-a-file");
    fs::create_dir(&path).unwrap();
    let watcher = watcher();
    let Follower { task, .. } = start(config(&path), &watcher);
    let error = timeout(WAIT, task).await.unwrap().unwrap().unwrap_err();
    assert!(matches!(error, FileSourceError::NotAFile { .. }));
    assert_eq!(error.path(), path);
    assert!(error.to_string().contains("not-a-file"));
}

#[tokio::test]
async fn a_polling_watcher_follows_appends_and_rotation_without_inotify() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "auth.log");
    append(&path, b"a1\n");
    let watcher = FileWatcher::polling(Duration::from_millis(20));
    assert!(watcher.is_polling());
    let mut follower = start(config(&path), &watcher);
    assert_eq!(follower.texts(1).await, ["a1"]);

    append(&path, b"a2\n");
    assert_eq!(follower.texts(1).await, ["a2"]);

    fs::rename(&path, rotated(&path)).unwrap();
    append(&rotated(&path), b"late\n");
    append(&path, b"b1\n");
    assert_eq!(follower.texts(2).await, ["late", "b1"]);
    follower.stop().await.unwrap();
}

#[tokio::test]
async fn a_watch_in_a_missing_directory_polls_until_the_directory_exists() {
    let dir = tempfile::tempdir().unwrap();
    let container_dir = log_in(&dir, "abc");
    let path = container_dir.join("abc-json.log");
    let watcher = watcher();
    let mut watch = watcher.watch(&path);
    assert!(watch.is_polling());

    fs::create_dir(&container_dir).unwrap();
    timeout(WAIT, async {
        while watch.is_polling() {
            watch.changed().await;
        }
    })
    .await
    .expect("watch did not move to inotify");

    // From now on, inotify wakes it.
    append(&path, b"{}\n");
    timeout(WAIT, watch.changed()).await.unwrap();

    // And a follower of such a file gets its lines.
    let other_dir = log_in(&dir, "def");
    let other = other_dir.join("def-json.log");
    let mut follower = start(config(&other), &watcher);
    fs::create_dir(&other_dir).unwrap();
    append(&other, b"{\"log\":\"hello\\n\"}\n");
    assert_eq!(follower.texts(1).await, ["{\"log\":\"hello\\n\"}"]);
    follower.stop().await.unwrap();
}

#[tokio::test]
async fn a_watch_wakes_on_writes_and_on_rotation_in_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "auth.log");
    append(&path, b"x\n");
    let watcher = watcher();
    let mut watch = watcher.watch(&path);
    assert!(!watch.is_polling());

    append(&path, b"y\n");
    timeout(WAIT, watch.changed()).await.expect("write");
    fs::rename(&path, rotated(&path)).unwrap();
    timeout(WAIT, watch.changed()).await.expect("rename");
    File::create(&path).unwrap();
    timeout(WAIT, watch.changed()).await.expect("create");

    // Two files of one directory share its watch; dropping one leaves the other working.
    let other = log_in(&dir, "kern.log");
    let mut other_watch = watcher.watch(&other);
    drop(watch);
    append(&other, b"z\n");
    timeout(WAIT, other_watch.changed())
        .await
        .expect("other file");
}

#[tokio::test]
async fn a_watcher_that_stops_leaves_its_watches_polling() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "auth.log");
    let shutdown = CancellationToken::new();
    let watcher = FileWatcher::start(shutdown.clone()).unwrap();
    let mut watch = watcher.watch(&path);
    assert!(!watch.is_polling());

    shutdown.cancel();
    timeout(WAIT, watch.changed())
        .await
        .expect("woken by the stop");
    assert!(watch.is_polling());
    assert!(watcher.is_polling());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_files_share_one_watcher() {
    const FILES: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let watcher = watcher();
    let (tx, mut rx) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let paths: Vec<PathBuf> = (0..FILES)
        .map(|number| log_in(&dir, &format!("service-{number}.log")))
        .collect();
    let tasks: Vec<_> = paths
        .iter()
        .map(|path| {
            tokio::spawn(follow(
                config(path),
                watcher.clone(),
                tx.clone(),
                shutdown.clone(),
            ))
        })
        .collect();
    drop(tx);

    for round in 0..3 {
        for (number, path) in paths.iter().enumerate() {
            append(path, format!("file {number} line {round}\n").as_bytes());
        }
    }

    let mut per_file = vec![Vec::new(); FILES];
    let mut received = 0;
    while received < FILES * 3 {
        let batch = timeout(WAIT, rx.recv())
            .await
            .expect("lines missing")
            .unwrap();
        let Origin::File { path } = batch.origin.as_ref() else {
            panic!("unexpected origin {:?}", batch.origin);
        };
        let number = paths
            .iter()
            .position(|candidate| candidate == path)
            .unwrap();
        received += batch.lines.len();
        per_file[number].extend(texts(&batch.lines));
    }
    for (number, lines) in per_file.iter().enumerate() {
        let expected: Vec<String> = (0..3)
            .map(|round| format!("file {number} line {round}"))
            .collect();
        assert_eq!(lines, &expected);
    }

    shutdown.cancel();
    for task in tasks {
        timeout(WAIT, task).await.unwrap().unwrap().unwrap();
    }
}
