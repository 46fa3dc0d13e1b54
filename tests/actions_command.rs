//! Command actions running real programs: arguments arrive exactly as built (forged log text
//! included, one argument, never run), failures are counted, slow programs and what they
//! started are killed at the timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use logjail::action::{ActionCounts, ActionOutcome, Notice, Notifier, NotifierHandle, NotifyKind};
use logjail::config::Config;
use logjail::config::action::{ArgTemplate, CommandConfig, NotifyConfig, NotifyEvent, NotifyOn};
use logjail::duration::BanTime;

/// Writes its arguments after the first to the file the first names, each followed by a NUL
/// byte, so that the test sees exactly the argument vector. It is run as `/bin/sh SCRIPT …`:
/// the log text it receives is data in `"$@"`, never shell code.
const RECORD_ARGS: &str = r#"out="$1"; shift
for arg in "$@"; do printf '%s\0' "$arg"; done > "$out.tmp"
mv "$out.tmp" "$out"
"#;

/// Starts a grandchild that would outlive a careless kill, writes both process ids to the
/// FIFO named by its argument, and waits.
const SLOW: &str = r#"sleep 300 &
echo "$$ $!" > "$1"
wait
"#;

fn script(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn command(argv: &[&str], timeout: Duration) -> NotifyConfig {
    NotifyConfig::Command(CommandConfig {
        argv: argv
            .iter()
            .map(|a| ArgTemplate::parse(a).unwrap())
            .collect(),
        on: NotifyOn::default(),
        timeout,
    })
}

fn notice(matches: &[&str], actions: Vec<NotifyConfig>) -> Notice {
    Notice {
        event: NotifyEvent::Ban,
        jail: "sshd".to_string(),
        host: "203.0.113.7".parse().unwrap(),
        failures: 3,
        bantime: BanTime::Finite(Duration::from_secs(3600)),
        ban_count: 2,
        matches: matches.iter().map(ToString::to_string).collect(),
        origin: None,
        time: Utc.with_ymd_and_hms(2026, 11, 26, 7, 0, 1).unwrap(),
        dry_run: false,
        actions: Arc::from(actions),
    }
}

async fn next_outcome(outcomes: &mut broadcast::Receiver<ActionOutcome>) -> ActionOutcome {
    tokio::time::timeout(Duration::from_secs(20), outcomes.recv())
        .await
        .expect("no outcome within 20 s")
        .unwrap()
}

fn command_counts(handle: &NotifierHandle) -> ActionCounts {
    handle
        .counts()
        .into_iter()
        .find(|c| c.kind == NotifyKind::Command)
        .unwrap()
}

fn recorded_args(path: &Path) -> Vec<String> {
    let bytes = fs::read(path).unwrap();
    let mut args: Vec<String> = bytes
        .split(|b| *b == 0)
        .map(|arg| String::from_utf8(arg.to_vec()).unwrap())
        .collect();
    // The text ends with a NUL, which leaves one empty piece after it.
    assert_eq!(args.pop().as_deref(), Some(""));
    args
}

/// A FIFO in `dir`: reading it waits until the script has written, without polling.
fn fifo(dir: &Path) -> PathBuf {
    let path = dir.join("pids");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    path
}

/// The process ids the slow script reports (itself and its grandchild).
async fn started_pids(fifo: &Path) -> Vec<String> {
    let fifo = fifo.to_path_buf();
    let read = tokio::task::spawn_blocking(move || fs::read_to_string(fifo).unwrap());
    let text = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the script never reported its processes")
        .unwrap();
    let pids: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    assert_eq!(pids.len(), 2, "{text}");
    pids
}

/// Whether a process is gone (no longer listed, or a zombie waiting for its parent) or
/// doomed: SIGKILL is pending for it, which nothing can block or handle. A killed process
/// may still be listed for a moment after the signal was sent.
fn is_killed(pid: &str) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    let state = field("State:");
    let sigkill = 1u64 << (9 - 1);
    let pending = ["SigPnd:", "ShdPnd:"]
        .iter()
        .any(|name| u64::from_str_radix(&field(name), 16).unwrap_or(0) & sigkill != 0);
    state.starts_with('Z') || state.starts_with('X') || pending
}

#[tokio::test]
async fn arguments_arrive_exactly_and_log_text_is_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let record = script(dir.path(), "record.sh", RECORD_ARGS);
    let out = dir.path().join("args");
    let pwned = dir.path().join("pwned");
    let forged = format!(
        "Failed password for $(touch {p}) `touch {p}`; touch {p} from 6.6.6.6",
        p = pwned.display()
    );
    let matches = [forged.as_str(), "second line with 'quotes' and \"doubles\""];

    // Through the configuration, as a user would write it.
    let yaml = format!(
        r#"jails:
  sshd:
    manual: true
    action:
      - drop
      - command:
          argv: [/bin/sh, "{record}", "{out}", "<jail>", "--ip=<ip>", "<failures>", "<bantime>",
                 "<origin>", "<matches>", "<event>#<ban_count>", "<time>"]
          timeout: 10s
"#,
        out = out.display()
    );
    let config = Config::from_yaml_str(&yaml, "test.yaml").unwrap();
    let action = config.jail("sshd").unwrap().action.clone();

    let shutdown = CancellationToken::new();
    let (handle, task) = Notifier::start(shutdown.clone());
    let mut outcomes = handle.outcomes();
    let mut ban = notice(&matches, Vec::new());
    ban.actions = action.notify.clone();
    handle.notify(ban);
    let outcome = next_outcome(&mut outcomes).await;
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(outcome.kind, NotifyKind::Command);
    assert_eq!(outcome.target, "/bin/sh");

    assert_eq!(
        recorded_args(&out),
        [
            "sshd",
            "--ip=203.0.113.7",
            "3",
            "3600",
            "",
            &format!("{forged}\nsecond line with 'quotes' and \"doubles\""),
            "ban#2",
            "2026-11-26T07:00:01Z",
        ]
    );
    assert!(!pwned.exists(), "log text was run");
    assert_eq!(command_counts(&handle).sent, 1);
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_failing_command_is_counted_with_its_error_output() {
    let dir = tempfile::tempdir().unwrap();
    let failing = script(
        dir.path(),
        "fail.sh",
        "echo \"cannot reach the firewall\" >&2\nprintf 'forged\\nlog line' >&2\nexit 3\n",
    );
    let shutdown = CancellationToken::new();
    let (handle, task) = Notifier::start(shutdown.clone());
    let mut outcomes = handle.outcomes();
    handle.notify(notice(
        &[],
        vec![
            command(&["/bin/sh", &failing], Duration::from_secs(10)),
            command(&["/nonexistent/notify", "<ip>"], Duration::from_secs(10)),
            command(&["true"], Duration::from_secs(10)),
        ],
    ));
    let mut errors = Vec::new();
    for _ in 0..3 {
        let outcome = next_outcome(&mut outcomes).await;
        if let Err(error) = outcome.result {
            errors.push((outcome.target, error));
        }
    }
    errors.sort();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].0, "/bin/sh");
    assert_eq!(
        errors[0].1,
        "exit status: 3, stderr: \"cannot reach the firewall\\nforged\\nlog line\""
    );
    assert_eq!(errors[1].0, "/nonexistent/notify");
    assert!(
        errors[1]
            .1
            .starts_with("cannot start /nonexistent/notify: "),
        "{}",
        errors[1].1
    );
    let counts = command_counts(&handle);
    assert_eq!((counts.sent, counts.failed, counts.dropped), (1, 2, 0));
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_slow_command_and_what_it_started_are_killed_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let slow = script(dir.path(), "slow.sh", SLOW);
    let pids = fifo(dir.path());
    let shutdown = CancellationToken::new();
    let (handle, task) = Notifier::start(shutdown.clone());
    let mut outcomes = handle.outcomes();
    let started = Instant::now();
    handle.notify(notice(
        &[],
        vec![command(
            &["/bin/sh", &slow, pids.to_str().unwrap()],
            Duration::from_millis(1500),
        )],
    ));
    let ids = started_pids(&pids).await;
    let outcome = next_outcome(&mut outcomes).await;
    let elapsed = started.elapsed();
    assert_eq!(
        outcome.result,
        Err("timed out after 1500ms; killed".to_string())
    );
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    for id in ids {
        assert!(is_killed(&id), "process {id} survived the timeout");
    }
    assert_eq!(command_counts(&handle).failed, 1);
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn shutdown_kills_running_commands() {
    let dir = tempfile::tempdir().unwrap();
    let slow = script(dir.path(), "slow.sh", SLOW);
    let pids = fifo(dir.path());
    let shutdown = CancellationToken::new();
    let (handle, task) = Notifier::start(shutdown.clone());
    handle.notify(notice(
        &[],
        vec![command(
            &["/bin/sh", &slow, pids.to_str().unwrap()],
            Duration::from_secs(600),
        )],
    ));
    let ids = started_pids(&pids).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("notifier did not stop at shutdown")
        .unwrap();
    for id in ids {
        assert!(is_killed(&id), "process {id} survived shutdown");
    }
    assert_eq!(command_counts(&handle).failed, 1);
}
