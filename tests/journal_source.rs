//! The journal source on real journal files: `systemd-journal-remote` writes them from Journal
//! Export Format (no journald needed), the real `journalctl --directory` follows them. Resume
//! by cursor (entries stamped earlier than the last one read included, the cursor's entry gone,
//! a refused or foreign cursor) and by a time stored before cursors, unit and field matches,
//! byte-array messages, a restart of journalctl, and the daemon end to end up to a ban.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use logjail::config::{Config, JournalMatch, JournalSelector, SourceConfig};
use logjail::filter::envelope::Decoder;
use logjail::messages::DaemonEvent;
use logjail::messages::{LineBatch, Origin, Position, RawLine};
use logjail::source::journal::{self, JournalFollowConfig, JournalSourceError};
use logjail::store::Store;
use support::{TestDaemon, ip};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(15);
/// How long a probe entry is waited for before the next one is written (see `probe`).
const PROBE_WAIT: Duration = Duration::from_millis(300);
const BOOT_ID: &str = "0123456789abcdef0123456789abcdef";

fn journal_remote() -> PathBuf {
    [
        "/lib/systemd/systemd-journal-remote",
        "/usr/lib/systemd/systemd-journal-remote",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|path| path.exists())
    .expect("systemd-journal-remote is installed (Debian package systemd-journal-remote)")
}

/// One journal entry to write.
#[derive(Debug, Clone)]
struct Entry {
    time: DateTime<Utc>,
    fields: Vec<(&'static str, Vec<u8>)>,
}

impl Entry {
    fn new(time: DateTime<Utc>, unit: &str, program: &str, pid: u32, message: &[u8]) -> Entry {
        Entry {
            time,
            fields: vec![
                ("_HOSTNAME", b"web".to_vec()),
                ("_SYSTEMD_UNIT", unit.as_bytes().to_vec()),
                ("SYSLOG_IDENTIFIER", program.as_bytes().to_vec()),
                ("_PID", pid.to_string().into_bytes()),
                ("MESSAGE", message.to_vec()),
            ],
        }
    }

    fn sshd(time: DateTime<Utc>, pid: u32, message: &str) -> Entry {
        Entry::sshd_bytes(time, pid, message.as_bytes())
    }

    fn sshd_bytes(time: DateTime<Utc>, pid: u32, message: &[u8]) -> Entry {
        Entry::new(time, "ssh.service", "sshd", pid, message)
    }

    /// The line the source makes of this entry.
    fn line(&self, program: &str, pid: u32, message: &str) -> String {
        format!(
            "{} web {program}[{pid}]: {message}",
            self.time.to_rfc3339_opts(SecondsFormat::Micros, true)
        )
    }
}

/// A directory of journal files written by systemd-journal-remote.
struct TestJournal {
    dir: tempfile::TempDir,
    /// Entries of one boot must have increasing monotonic times: journalctl orders entries of
    /// different files by them.
    monotonic: u64,
}

impl TestJournal {
    fn new() -> TestJournal {
        TestJournal {
            dir: tempfile::tempdir().unwrap(),
            monotonic: 1_000_000,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Appends `entries` to `DIR/<file>.journal` (created if new).
    fn write(&mut self, file: &str, entries: &[Entry]) {
        let mut export = Vec::new();
        for entry in entries {
            self.monotonic += 1000;
            let micros = entry.time.timestamp_micros();
            write!(
                export,
                "__REALTIME_TIMESTAMP={micros}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={BOOT_ID}\n",
                self.monotonic
            )
            .unwrap();
            // The binary form for every field: it carries newlines and any byte.
            for (name, value) in &entry.fields {
                export.extend_from_slice(name.as_bytes());
                export.push(b'\n');
                export.extend_from_slice(&(value.len() as u64).to_le_bytes());
                export.extend_from_slice(value);
                export.push(b'\n');
            }
            export.push(b'\n');
        }
        let output = self.dir.path().join(format!("{file}.journal"));
        let mut child = Command::new(journal_remote())
            .arg(format!("--output={}", output.display()))
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&export).unwrap();
        let done = child.wait_with_output().unwrap();
        assert!(
            done.status.success(),
            "systemd-journal-remote: {}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
}

/// Now, to the microsecond (what the journal stores), minus `back` milliseconds.
fn now_minus(back_ms: i64) -> DateTime<Utc> {
    let micros = Utc::now().timestamp_micros() - back_ms * 1000;
    DateTime::<Utc>::from_timestamp_micros(micros).unwrap()
}

fn micros(time: DateTime<Utc>, add: i64) -> DateTime<Utc> {
    time + chrono::Duration::microseconds(add)
}

fn selector(unit: Option<&str>, journal: &TestJournal) -> JournalSelector {
    JournalSelector {
        unit: unit.map(str::to_string),
        matches: Vec::new(),
        directory: Some(journal.path().to_path_buf()),
    }
}

struct Following {
    lines: mpsc::Receiver<LineBatch>,
    stop: CancellationToken,
    task: JoinHandle<Result<(), JournalSourceError>>,
    origin: Arc<Origin>,
}

fn start(selector: JournalSelector, resume: Option<Position>) -> Following {
    let mut config = JournalFollowConfig::new(selector);
    config.resume = resume;
    start_with(config)
}

fn start_with(config: JournalFollowConfig) -> Following {
    let origin = config.origin.clone();
    let (tx, lines) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let task = tokio::spawn(journal::follow(config, tx, stop.clone()));
    Following {
        lines,
        stop,
        task,
        origin,
    }
}

impl Following {
    /// The next `count` lines, failing after a while.
    async fn take(&mut self, count: usize) -> Vec<RawLine> {
        let mut out = Vec::new();
        tokio::time::timeout(WAIT, async {
            while out.len() < count {
                let batch = self.lines.recv().await.expect("the source is running");
                assert_eq!(batch.origin, self.origin);
                out.extend(positioned_at_end(batch));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("expected {count} lines, got {out:#?}"));
        out
    }

    /// Lines up to and including the first whose text ends with `last`.
    async fn until(&mut self, last: &str) -> Vec<RawLine> {
        let mut out: Vec<RawLine> = Vec::new();
        tokio::time::timeout(WAIT, async {
            while !out.iter().any(|l| l.text.ends_with(last)) {
                let batch = self.lines.recv().await.expect("the source is running");
                out.extend(positioned_at_end(batch));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("expected a line ending {last:?}, got {out:#?}"));
        let end = out.iter().position(|l| l.text.ends_with(last)).unwrap();
        assert_eq!(end + 1, out.len(), "lines after {last:?}: {out:#?}");
        out
    }

    /// Stops the source; returns the position of the last line handed on.
    async fn stop(self, last: &RawLine) -> Position {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the source stops on shutdown")
            .unwrap()
            .unwrap();
        last.position
            .clone()
            .expect("the last line of a batch carries the position")
    }
}

/// The lines of a batch, checked to carry one position, on the last line (what is stored).
fn positioned_at_end(batch: LineBatch) -> Vec<RawLine> {
    let (last, rest) = batch.lines.split_last().expect("no empty batches");
    assert!(last.position.is_some(), "{:#?}", batch.lines);
    assert!(
        rest.iter().all(|line| line.position.is_none()),
        "{:#?}",
        batch.lines
    );
    batch.lines
}

/// The position of the last line of `lines` with one.
fn last_position(lines: &[RawLine]) -> Position {
    lines
        .iter()
        .rev()
        .find_map(|line| line.position.clone())
        .expect("a line with a position")
}

/// The time and count of a cursor position (what it falls back on).
fn cursor_time(position: &Position) -> (DateTime<Utc>, u32) {
    match position {
        Position::Cursor {
            time, seen_at_time, ..
        } => (*time, *seen_at_time),
        other => panic!("not a cursor position: {other:?}"),
    }
}

fn texts(lines: &[RawLine]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

fn at(time: DateTime<Utc>, seen_at_time: u32) -> Option<Position> {
    Some(Position::Time { time, seen_at_time })
}

/// Writes probe entries until the source hands one on: it then reads the journal's end, and
/// entries written from now on are seen. Used where the source starts at the end of the
/// journal, which it reaches at a moment the test cannot see.
async fn probe(journal: &mut TestJournal, following: &mut Following) -> Vec<RawLine> {
    for attempt in 0..50 {
        let message = format!("probe {attempt}");
        journal.write("a", &[Entry::sshd(now_minus(0), 1, &message)]);
        if let Ok(Some(batch)) = tokio::time::timeout(PROBE_WAIT, following.lines.recv()).await {
            return positioned_at_end(batch);
        }
    }
    panic!("the source never handed on a probe entry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_appends_and_new_files_then_resumes_exactly() {
    let mut journal = TestJournal::new();
    let t0 = now_minus(10_000);
    let t1 = micros(t0, 1000);
    let a1 = Entry::sshd(
        t0,
        100,
        "Failed password for root from 192.0.2.5 port 22 ssh2",
    );
    // Two entries with the very same time: the position counts them.
    let a2 = Entry::sshd(t1, 101, "second");
    let a3 = Entry::sshd(t1, 102, "third");
    journal.write("a", &[a1.clone(), a2.clone(), a3.clone()]);

    // A time stored by a logjail from before cursors: resumed by time.
    let mut following = start(selector(None, &journal), at(t0, 0));
    let lines = following.take(3).await;
    assert_eq!(
        texts(&lines),
        [
            a1.line(
                "sshd",
                100,
                "Failed password for root from 192.0.2.5 port 22 ssh2"
            ),
            a2.line("sshd", 101, "second"),
            a3.line("sshd", 102, "third"),
        ]
    );
    // Stored from now on: the cursor, and the time with the entries stamped so.
    assert_eq!(cursor_time(&last_position(&lines)), (t1, 2));

    // While following: appended to the same file (stamped like the last two, written later),
    // and a new file in the directory.
    let b1 = Entry::sshd(t1, 103, "appended");
    journal.write("a", std::slice::from_ref(&b1));
    let lines = following.take(1).await;
    assert_eq!(texts(&lines), [b1.line("sshd", 103, "appended")]);
    assert_eq!(cursor_time(&last_position(&lines)), (t1, 3));
    let t2 = micros(t0, 2000);
    let c1 = Entry::sshd(t2, 104, "new file");
    journal.write("b", std::slice::from_ref(&c1));
    let lines = following.take(1).await;
    assert_eq!(texts(&lines), [c1.line("sshd", 104, "new file")]);
    let stored = following.stop(&lines[0]).await;
    assert_eq!(cursor_time(&stored), (t2, 1));

    // Written while stopped: one more with the stored time, one later.
    let d1 = Entry::sshd(t2, 105, "same time, while down");
    let d2 = Entry::sshd(micros(t0, 3000), 106, "later, while down");
    journal.write("b", std::slice::from_ref(&d1));
    journal.write("a", std::slice::from_ref(&d2));
    let mut following = start(selector(None, &journal), Some(stored));
    let lines = following.take(2).await;
    assert_eq!(
        texts(&lines),
        [
            d1.line("sshd", 105, "same time, while down"),
            d2.line("sshd", 106, "later, while down"),
        ]
    );
    // Nothing else comes before an entry written now: none was handed on twice.
    let e1 = Entry::sshd(micros(t0, 4000), 107, "sentinel");
    journal.write("a", std::slice::from_ref(&e1));
    let lines = following.until("sentinel").await;
    assert_eq!(texts(&lines), [e1.line("sshd", 107, "sentinel")]);
    following.stop(&lines[0]).await;
}

/// The line of each entry (all written by `Entry::sshd`).
fn sshd_lines(entries: &[(Entry, u32, &str)]) -> Vec<String> {
    entries
        .iter()
        .map(|(entry, pid, message)| entry.line("sshd", *pid, message))
        .collect()
}

fn sshd_entries(entries: &[(DateTime<Utc>, u32, &'static str)]) -> Vec<(Entry, u32, &'static str)> {
    entries
        .iter()
        .map(|&(time, pid, message)| (Entry::sshd(time, pid, message), pid, message))
        .collect()
}

fn write_all(journal: &mut TestJournal, file: &str, entries: &[(Entry, u32, &str)]) {
    let entries: Vec<Entry> = entries.iter().map(|(entry, _, _)| entry.clone()).collect();
    journal.write(file, &entries);
}

/// The case resuming by time got wrong: entries written while logjail was down, stamped
/// earlier than the last one it read (a clock stepped back), were taken as already read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_by_cursor_reads_entries_stamped_before_the_last_one_read() {
    let mut journal = TestJournal::new();
    let t0 = now_minus(10_000);
    let read = sshd_entries(&[(t0, 200, "first"), (micros(t0, 1000), 201, "last read")]);
    write_all(&mut journal, "a", &read);
    let mut following = start(selector(None, &journal), at(t0, 0));
    let lines = following.until("last read").await;
    assert_eq!(texts(&lines), sshd_lines(&read));
    let stored = following.stop(lines.last().unwrap()).await;

    let down = sshd_entries(&[
        (micros(t0, -5_000_000), 202, "stamped before all read"),
        (micros(t0, 500), 203, "stamped between the two read"),
        (micros(t0, 1000), 204, "stamped like the last read"),
        (micros(t0, 2000), 205, "sentinel"),
    ]);
    write_all(&mut journal, "a", &down);
    let mut following = start(selector(None, &journal), Some(stored));
    // All of them, in the journal's order, and nothing read before.
    let lines = following.until("sentinel").await;
    assert_eq!(texts(&lines), sshd_lines(&down));
    // The time kept to fall back on does not go back.
    assert_eq!(cursor_time(&last_position(&lines)), (micros(t0, 2000), 1));

    // Restarted once more: none of them again, and an earlier stamp is still news.
    let stored = following.stop(lines.last().unwrap()).await;
    let mut following = start(selector(None, &journal), Some(stored));
    let again = sshd_entries(&[(micros(t0, -1_000_000), 206, "earlier again")]);
    write_all(&mut journal, "a", &again);
    let lines = following.until("earlier again").await;
    assert_eq!(texts(&lines), sshd_lines(&again));
    following.stop(&lines[0]).await;
}

/// The file holding the cursor's entry was vacuumed: journalctl places the cursor by the
/// boot's monotonic time, and the first entry after it is read (not skipped as the cursor's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_by_cursor_whose_entry_is_gone() {
    let mut journal = TestJournal::new();
    let t0 = now_minus(10_000);
    let old = sshd_entries(&[(t0, 300, "in a file vacuumed later")]);
    write_all(&mut journal, "old", &old);
    let mut following = start(selector(None, &journal), at(t0, 0));
    let lines = following.take(1).await;
    assert_eq!(texts(&lines), sshd_lines(&old));
    let stored = following.stop(&lines[0]).await;

    let new = sshd_entries(&[
        (micros(t0, 1000), 301, "first of a new file"),
        (micros(t0, 2000), 302, "sentinel"),
    ]);
    write_all(&mut journal, "new", &new);
    std::fs::remove_file(journal.path().join("old.journal")).unwrap();
    let mut following = start(selector(None, &journal), Some(stored));
    let lines = following.until("sentinel").await;
    assert_eq!(texts(&lines), sshd_lines(&new));
    following.stop(lines.last().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_foreign_cursor_falls_back_to_time() {
    let mut journal = TestJournal::new();
    let t0 = now_minus(10_000);
    let t1 = micros(t0, 1000);
    let entries = sshd_entries(&[
        (t0, 400, "before the stored time"),
        (t1, 401, "at the stored time, read before"),
        (t1, 402, "at the stored time, new"),
        (micros(t0, 2000), 403, "after the stored time"),
    ]);
    write_all(&mut journal, "a", &entries);

    // A damaged cursor: journalctl refuses it; the source resumes by the time stored with it
    // (one entry stamped so was read) and goes on.
    let mut config = JournalFollowConfig::new(selector(None, &journal));
    config.resume = Some(Position::Cursor {
        cursor: "not a cursor".into(),
        time: t1,
        seen_at_time: 1,
    });
    config.first_backoff = Duration::from_millis(20);
    let mut following = start_with(config);
    let lines = following.until("after the stored time").await;
    assert_eq!(texts(&lines), sshd_lines(&entries[2..]));
    let later = sshd_entries(&[(micros(t0, 3000), 404, "later")]);
    write_all(&mut journal, "a", &later);
    let lines = following.until("later").await;
    assert_eq!(texts(&lines), sshd_lines(&later));
    // Back to a real cursor.
    let stored = following.stop(&lines[0]).await;
    assert_eq!(cursor_time(&stored), (micros(t0, 3000), 1));
    let Position::Cursor { cursor, .. } = &stored else {
        unreachable!()
    };
    assert!(cursor.starts_with("s="), "{cursor}");

    // Another machine's journal: the cursor parses but names no entry, sequence or boot of
    // these files, so journalctl places it by its wall-clock time (`t=`). The entry stamped
    // exactly then is read (it is not the cursor's).
    let t2 = micros(t0, 2000);
    let foreign = format!(
        "s=ffffffffffffffffffffffffffffffff;i=63;b=eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee;m=1;t={:x};x=1",
        t2.timestamp_micros()
    );
    let resume = Position::Cursor {
        cursor: foreign,
        time: t2,
        seen_at_time: 1,
    };
    let mut following = start(selector(None, &journal), Some(resume));
    let lines = following.until("later").await;
    assert_eq!(
        texts(&lines),
        [sshd_lines(&entries[3..]), sshd_lines(&later)].concat()
    );
    following.stop(lines.last().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_position_the_past_is_not_read() {
    let mut journal = TestJournal::new();
    journal.write("a", &[Entry::sshd(now_minus(5_000), 1, "from before")]);
    let mut following = start(selector(Some("ssh.service"), &journal), None);
    let mut seen = probe(&mut journal, &mut following).await;
    journal.write("a", &[Entry::sshd(now_minus(0), 2, "fresh")]);
    seen.extend(following.until("fresh").await);
    assert!(
        seen.iter()
            .all(|l| l.text.contains(" probe ") || l.text.ends_with("fresh")),
        "{seen:#?}"
    );
    following.stop(seen.last().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unit_and_field_matches_select_entries() {
    let mut journal = TestJournal::new();
    let t0 = now_minus(10_000);
    let message = "Failed password for root from 192.0.2.5 port 22 ssh2";
    journal.write(
        "a",
        &[
            Entry::new(t0, "ssh.service", "sshd", 10, message.as_bytes()),
            Entry::new(
                micros(t0, 1),
                "cron.service",
                "CRON",
                11,
                message.as_bytes(),
            ),
            Entry::new(
                micros(t0, 2),
                "ssh.service",
                "sshd-session",
                12,
                message.as_bytes(),
            ),
            Entry::new(micros(t0, 3), "cron.service", "sshd-session", 13, b"end"),
            Entry::new(micros(t0, 4), "ssh.service", "sshd-session", 14, b"end"),
        ],
    );

    let mut unit_only = start(selector(Some("ssh.service"), &journal), at(t0, 0));
    let lines = unit_only.until(": end").await;
    let pids: Vec<&str> = lines
        .iter()
        .map(|l| l.text.split(['[', ']']).nth(1).unwrap())
        .collect();
    assert_eq!(pids, ["10", "12", "14"]);
    // The program a filter sees is the identifier, sshd-session included.
    let mut decoder = Decoder::new();
    let record = decoder.push_at(&lines[1].text, Utc::now()).unwrap();
    assert_eq!(record.program.as_deref(), Some("sshd-session"));
    assert_eq!(record.text, message);
    assert_eq!(record.time, Some(micros(t0, 2)));
    unit_only.stop(lines.last().unwrap()).await;

    let mut matched = selector(Some("ssh.service"), &journal);
    matched.matches = vec![JournalMatch {
        field: "SYSLOG_IDENTIFIER".into(),
        value: "sshd-session".into(),
    }];
    let mut both = start(matched.clone(), at(t0, 0));
    let lines = both.until(": end").await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].text.contains(" sshd-session[12]: Failed password"));
    assert_eq!(
        *both.origin,
        Origin::Journal {
            unit: Some(format!(
                "ssh.service SYSLOG_IDENTIFIER=sshd-session in {}",
                journal.path().display()
            ))
        }
    );
    both.stop(lines.last().unwrap()).await;

    // Matches alone: same field twice is either value.
    let mut either = selector(None, &journal);
    either.matches = ["CRON", "sshd"]
        .iter()
        .map(|value| JournalMatch {
            field: "SYSLOG_IDENTIFIER".into(),
            value: value.to_string(),
        })
        .collect();
    let mut following = start(either, at(t0, 0));
    let lines = following.take(2).await;
    assert!(lines[0].text.contains(" sshd[10]: "), "{lines:#?}");
    assert!(lines[1].text.contains(" CRON[11]: "), "{lines:#?}");
    following.stop(&lines[1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_messages_and_newlines_make_one_line() {
    let mut journal = TestJournal::new();
    let t0 = now_minus(10_000);
    let mut invalid = b"Invalid user ".to_vec();
    invalid.extend_from_slice(&[0xff, 0xfe]);
    invalid.extend_from_slice(b" from 192.0.2.9 port 4444");
    let forged = b"hello\n2026-11-26T08:00:00Z web sshd[1]: Failed password for root from 6.6.6.6 port 22 ssh2\r\n";
    journal.write(
        "a",
        &[
            Entry::sshd_bytes(t0, 20, &invalid),
            Entry::sshd_bytes(micros(t0, 1), 21, forged),
        ],
    );
    let mut following = start(selector(None, &journal), at(t0, 0));
    let lines = following.take(2).await;
    let mut decoder = Decoder::new();
    let record = decoder.push_at(&lines[0].text, Utc::now()).unwrap();
    assert_eq!(
        record.text,
        "Invalid user \u{fffd}\u{fffd} from 192.0.2.9 port 4444"
    );
    assert!(!lines[1].text.contains('\n') && !lines[1].text.contains('\r'));
    let record = decoder.push_at(&lines[1].text, Utc::now()).unwrap();
    assert_eq!(record.program.as_deref(), Some("sshd"));
    assert_eq!(
        record.text,
        "hello 2026-11-26T08:00:00Z web sshd[1]: Failed password for root from 6.6.6.6 port 22 ssh2"
    );
    following.stop(&lines[1]).await;
}

/// The pids of the journalctl processes reading `dir`.
fn journalctl_pids(dir: &Path) -> Vec<u32> {
    let wanted = format!("--directory={}", dir.display());
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline
            .split(|&b| b == 0)
            .any(|arg| arg == wanted.as_bytes())
        {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_journalctl_is_restarted_where_it_was() {
    let mut journal = TestJournal::new();
    let t0 = now_minus(10_000);
    journal.write("a", &[Entry::sshd(t0, 30, "before")]);
    let mut config = JournalFollowConfig::new(selector(None, &journal));
    config.resume = at(t0, 0);
    config.first_backoff = Duration::from_millis(20);
    let mut following = start_with(config);
    let lines = following.take(1).await;
    assert!(lines[0].text.ends_with("before"));

    let pids = journalctl_pids(journal.path());
    assert_eq!(pids.len(), 1, "one journalctl per source");
    let killed = Command::new("kill")
        .args(["-KILL", &pids[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let after = [
        Entry::sshd(micros(t0, -1_000_000), 31, "stamped earlier, written later"),
        Entry::sshd(micros(t0, 1), 32, "after"),
    ];
    journal.write("a", &after);
    // Restarted from the last entry handed on: "before" is not read again, and an entry
    // stamped before it but written later is.
    let lines = following.until("after").await;
    assert_eq!(
        texts(&lines),
        [
            after[0].line("sshd", 31, "stamped earlier, written later"),
            after[1].line("sshd", 32, "after")
        ]
    );
    let new_pids = journalctl_pids(journal.path());
    assert_eq!(new_pids.len(), 1);
    assert_ne!(new_pids, pids);
    following.stop(lines.last().unwrap()).await;
    // Stopping the source stops journalctl.
    tokio::time::timeout(WAIT, async {
        while !journalctl_pids(journal.path()).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("journalctl is gone after shutdown");
}

#[tokio::test]
async fn a_missing_journalctl_is_an_error_naming_it() {
    let journal = TestJournal::new();
    let mut config = JournalFollowConfig::new(selector(None, &journal));
    config.journalctl = PathBuf::from("/nonexistent/journalctl");
    let (tx, _rx) = mpsc::channel(1);
    let error = tokio::time::timeout(WAIT, journal::follow(config, tx, CancellationToken::new()))
        .await
        .expect("gives up at once")
        .unwrap_err();
    assert!(matches!(error, JournalSourceError::NotFound { .. }));
    assert!(
        error.to_string().contains("/nonexistent/journalctl"),
        "{error}"
    );
}

#[test]
fn the_directory_must_be_absolute() {
    let yaml = |directory: &str| {
        format!(
            "docker: {{enabled: false}}\njails:\n  ssh:\n    filter: sshd\n    sources:\n      - journal: {{unit: ssh.service, directory: {directory}}}\n"
        )
    };
    let config = Config::from_yaml_str(&yaml("/host/var/log/journal"), "t.yaml").unwrap();
    let jail = config.jails.iter().find(|j| j.name == "ssh").unwrap();
    assert!(matches!(
        &jail.sources[0],
        SourceConfig::Journal(JournalSelector { directory: Some(dir), .. })
            if dir == Path::new("/host/var/log/journal")
    ));
    let error = Config::from_yaml_str(&yaml("var/log/journal"), "t.yaml")
        .unwrap_err()
        .to_string();
    assert!(error.contains("must be an absolute path"), "{error}");
}

// ---- The daemon end to end ----

fn daemon_config(state: &Path, journal: &Path) -> Config {
    let text = format!(
        r#"
store:
  path: {state}/state.db
control:
  socket: {state}/logjail.sock
docker:
  enabled: false
metrics:
  enabled: false
jails:
  ssh:
    filter: sshd
    maxretry: 2
    findtime: 1h
    bantime: 1h
    sources:
      - journal: {{unit: ssh.service, directory: {journal}}}
"#,
        state = state.display(),
        journal = journal.display()
    );
    support::config_from_yaml(&text)
}

fn start_daemon(config: Config) -> TestDaemon {
    TestDaemon::builder(config).patience(WAIT).start()
}

/// Failures (host) seen until `host` is banned, the banning one included (its event follows
/// the ban's); returns them, the ban's failure count and origin.
async fn until_banned(
    daemon: &mut TestDaemon,
    host: IpAddr,
) -> (Vec<IpAddr>, u32, Option<Arc<Origin>>) {
    let mut failures = Vec::new();
    let banned = tokio::time::timeout(WAIT, async {
        loop {
            match daemon.events.recv().await.unwrap() {
                DaemonEvent::Failure { host, .. } => failures.push(host),
                DaemonEvent::Banned { order, origin } if order.host == host => loop {
                    if let DaemonEvent::Failure { host, .. } = daemon.events.recv().await.unwrap() {
                        failures.push(host);
                        return (order.failures, origin);
                    }
                },
                _ => {}
            }
        }
    })
    .await;
    let Ok((count, origin)) = banned else {
        panic!("{host} not banned; failures seen: {failures:?}");
    };
    (failures, count, origin)
}

fn failed(host: &str) -> String {
    format!("Failed password for root from {host} port 22 ssh2")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_bans_from_the_journal_and_resumes_after_restart() {
    let state = tempfile::tempdir().unwrap();
    let mut journal = TestJournal::new();
    let config = daemon_config(state.path(), journal.path());
    let mut running = start_daemon(config.clone());

    // Started at the journal's end: wait until it reads it (a probe failure gets through).
    // The directory is empty at first, so journalctl exits and is restarted: the restart
    // begins where the first run would have (the daemon's start), not at the end again.
    let probe_host = "198.51.100.7";
    let mut reached = false;
    for _ in 0..50 {
        journal.write("a", &[Entry::sshd(now_minus(0), 1, &failed(probe_host))]);
        let seen = tokio::time::timeout(PROBE_WAIT, async {
            loop {
                if let DaemonEvent::Failure { host, .. } = running.events.recv().await.unwrap() {
                    return host;
                }
            }
        })
        .await;
        if seen.is_ok() {
            reached = true;
            break;
        }
    }
    assert!(reached, "the daemon never read a probe entry");

    let forged = format!("x\n2026-11-26T08:00:00Z web sshd[1]: {}", failed("6.6.6.6"));
    journal.write(
        "a",
        &[
            Entry::sshd(now_minus(0), 40, &forged),
            // Another unit: not read.
            Entry::new(
                now_minus(0),
                "cron.service",
                "sshd",
                41,
                failed("203.0.113.9").as_bytes(),
            ),
            Entry::sshd(now_minus(0), 42, &failed("192.0.2.5")),
            Entry::new(
                now_minus(0),
                "ssh.service",
                "sshd-session",
                43,
                failed("192.0.2.5").as_bytes(),
            ),
        ],
    );
    let (failures, count, origin) = until_banned(&mut running, ip("192.0.2.5")).await;
    assert_eq!(count, 2);
    let after_probes: Vec<IpAddr> = failures
        .into_iter()
        .filter(|host| *host != ip(probe_host))
        .collect();
    assert_eq!(after_probes, [ip("192.0.2.5"), ip("192.0.2.5")]);
    let SourceConfig::Journal(selector) = &config.jails[0].sources[0] else {
        panic!("a journal source");
    };
    assert_eq!(*origin.unwrap(), journal::journal_origin(selector));
    running.stop().await;

    // Written while logjail is down: read after the restart, and nothing before them again.
    journal.write(
        "a",
        &[
            Entry::sshd(now_minus(0), 50, &failed("192.0.2.6")),
            Entry::sshd(now_minus(0), 51, &failed("192.0.2.6")),
        ],
    );
    let mut running = start_daemon(config);
    let (failures, count, _) = until_banned(&mut running, ip("192.0.2.6")).await;
    assert_eq!(count, 2);
    assert_eq!(failures, [ip("192.0.2.6"), ip("192.0.2.6")]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_with_a_refused_cursor_resumes_by_time() {
    let state = tempfile::tempdir().unwrap();
    let mut journal = TestJournal::new();
    let config = daemon_config(state.path(), journal.path());
    let SourceConfig::Journal(selector) = &config.jails[0].sources[0] else {
        panic!("a journal source");
    };
    let key = journal::journal_origin(selector).position_key();
    let t0 = now_minus(10_000);
    // Read before the stored time: these must not count again.
    journal.write(
        "a",
        &[
            Entry::sshd(t0, 70, &failed("192.0.2.9")),
            Entry::sshd(micros(t0, 1), 71, &failed("192.0.2.9")),
        ],
    );
    let mut store = Store::open(&state.path().join("state.db")).unwrap();
    let damaged = Position::Cursor {
        cursor: "s=damaged".into(),
        time: micros(t0, 500),
        seen_at_time: 0,
    };
    store
        .save_positions(&[(key.clone(), damaged.clone())], Utc::now())
        .unwrap();
    drop(store);

    journal.write(
        "a",
        &[
            Entry::sshd(micros(t0, 1000), 72, &failed("192.0.2.10")),
            Entry::sshd(micros(t0, 2000), 73, &failed("192.0.2.10")),
        ],
    );
    let mut running = start_daemon(config);
    let (failures, count, _) = until_banned(&mut running, ip("192.0.2.10")).await;
    assert_eq!(count, 2);
    assert_eq!(failures, [ip("192.0.2.10"), ip("192.0.2.10")]);
    running.stop().await;
    // The position stored on the way out is a real cursor again.
    let stored = Store::open(&state.path().join("state.db"))
        .unwrap()
        .load_positions()
        .unwrap()
        .remove(&key)
        .unwrap();
    assert_eq!(cursor_time(&stored), (micros(t0, 2000), 1));
    assert_ne!(stored, damaged);
}

/// The `--unit=` argument of each journalctl reading `dir`, by pid.
fn journalctl_units(dir: &Path) -> Vec<(u32, String)> {
    journalctl_pids(dir)
        .into_iter()
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let unit = cmdline
                .split(|&b| b == 0)
                .find_map(|arg| arg.strip_prefix(b"--unit="))?;
            Some((pid, String::from_utf8_lossy(unit).into_owned()))
        })
        .collect()
}

async fn wait_for_units(dir: &Path, want: &[&str]) -> Vec<(u32, String)> {
    let mut want: Vec<String> = want.iter().map(|u| u.to_string()).collect();
    want.sort();
    tokio::time::timeout(WAIT, async {
        loop {
            let mut running = journalctl_units(dir);
            running.sort_by(|a, b| a.1.cmp(&b.1));
            let units: Vec<&String> = running.iter().map(|(_, unit)| unit).collect();
            if units == want.iter().collect::<Vec<_>>() {
                return running;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "journalctl for {want:?}; running: {:?}",
            journalctl_units(dir)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_shared_selections_and_stops_dropped_ones() {
    let state = tempfile::tempdir().unwrap();
    let mut journal = TestJournal::new();
    let socket = state.path().join("logjail.sock");
    let journal_dir = journal.path().display().to_string();
    let write_config = |second: &str| {
        let text = format!(
            r#"
store: {{path: {state}/state.db}}
control: {{socket: {socket}}}
docker: {{enabled: false}}
metrics: {{enabled: false}}
jails:
  ssh:
    filter: sshd
    maxretry: 3
    findtime: 1h
    sources:
      - journal: {{unit: ssh.service, directory: {journal}}}
{second}"#,
            state = state.path().display(),
            socket = socket.display(),
            journal = journal_dir
        );
        std::fs::write(state.path().join("logjail.yaml"), text).unwrap();
    };
    write_config(&format!(
        "  cron:\n    filter: sshd\n    sources:\n      - journal: {{unit: cron.service, directory: {journal_dir}}}\n"
    ));
    // journalctl exits at once on an empty directory (and is restarted): start with a file.
    journal.write("a", &[Entry::sshd(now_minus(1000), 1, "started")]);
    let config = Config::load(&state.path().join("logjail.yaml")).unwrap();
    let mut running = start_daemon(config);

    // The ssh.service follower reads the journal's end once a probe gets through.
    let mut reached = false;
    for _ in 0..50 {
        journal.write(
            "a",
            &[Entry::sshd(now_minus(0), 1, &failed("198.51.100.7"))],
        );
        let seen = tokio::time::timeout(PROBE_WAIT, async {
            loop {
                if let DaemonEvent::Failure { .. } = running.events.recv().await.unwrap() {
                    return;
                }
            }
        })
        .await;
        if seen.is_ok() {
            reached = true;
            break;
        }
    }
    assert!(reached, "the daemon never read a probe entry");
    let before = wait_for_units(journal.path(), &["cron.service", "ssh.service"]).await;

    // `cron` goes; `ssh2` reads the same selection as `ssh`: no new journalctl.
    write_config(&format!(
        "  ssh2:\n    filter: sshd\n    maxretry: 1\n    sources:\n      - journal: {{unit: ssh.service, directory: {journal_dir}}}\n"
    ));
    let out = running.cli(&["reload"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = wait_for_units(journal.path(), &["ssh.service"]).await;
    let ssh_before = before.iter().find(|(_, unit)| unit == "ssh.service");
    assert_eq!(
        Some(&after[0]),
        ssh_before,
        "the shared follower kept running"
    );

    // Both jails read it from where it was: one entry, counted by each.
    journal.write("a", &[Entry::sshd(now_minus(0), 60, &failed("192.0.2.8"))]);
    let mut judged_by = Vec::new();
    tokio::time::timeout(WAIT, async {
        while judged_by.len() < 2 {
            if let DaemonEvent::Failure { jail, host, .. } = running.events.recv().await.unwrap()
                && host == ip("192.0.2.8")
            {
                judged_by.push(jail.to_string());
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("judged by {judged_by:?}"));
    judged_by.sort();
    assert_eq!(judged_by, ["ssh", "ssh2"]);
    running.stop().await;
    wait_for_units(journal.path(), &[]).await;
}
