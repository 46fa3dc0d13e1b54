//! Memory and detection under a flood of distinct addresses (not a timed test: it prints figures).
//!
//! The real `logjail run` binary, in a network namespace of its own (so its firewall is real
//! but touches nothing of the host), follows a real host file. Once it is idle, the bench
//! appends `LJ_FLOOD_LINES` (default 1,000,000) sshd failures, each from a different address,
//! with one attacker's 10 failures spread evenly among them (so a whole tenth of the flood
//! arrives between two of its failures, and all ten fall within a minute), then one closing
//! line a second jail bans at once, which marks the end of processing. It reports:
//! - RSS when idle, peak RSS (`VmHWM`), RSS right after the flood;
//! - RSS once findtime (60 s) has passed and the jail's periodic purge (every 60 s) has run;
//! - the time to process the flood, and whether the attacker was banned.
//!
//! Run as root: `cargo bench --bench flood_memory` (`LJ_FLOOD_LINES=N` for another size,
//! `LJ_FLOOD_SETTLE_SECS` for how long to watch memory afterwards, default 150).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ATTACKER: &str = "203.0.113.66";
const ATTACKER_FAILURES: u64 = 10;
const CLOSING_HOST: &str = "198.51.100.200";
const MAXRETRY: u32 = 5;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_logjail")
}

/// The daemon's process, killed on drop (also on panic).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `logjail --json banned` through the control socket: the banned (jail, host) pairs.
fn banned(socket: &Path) -> Vec<(String, String)> {
    let output = Command::new(binary())
        .arg("-s")
        .arg(socket)
        .args(["--json", "banned"])
        .output()
        .unwrap();
    if !output.status.success() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let value: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_default();
    let list = value
        .as_array()
        .or_else(|| value.get("bans").and_then(|b| b.as_array()))
        .cloned()
        .unwrap_or_default();
    list.iter()
        .filter_map(|ban| {
            Some((
                ban.get("jail")?.as_str()?.to_string(),
                ban.get("ip")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

fn status(socket: &Path, jail: &str) -> serde_json::Value {
    let output = Command::new(binary())
        .arg("-s")
        .arg(socket)
        .args(["--json", "status", jail])
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap_or_default()
}

fn syslog_line(out: &mut impl Write, stamp: &str, pid: u64, host: &str) {
    writeln!(
        out,
        "{stamp} bench sshd[{pid}]: Failed password for root from {host} port {} ssh2",
        1024 + pid % 60_000
    )
    .unwrap();
}

fn main() {
    let lines = env_number("LJ_FLOOD_LINES", 1_000_000);
    let settle = Duration::from_secs(env_number("LJ_FLOOD_SETTLE_SECS", 150));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    let socket = dir.path().join("logjail.sock");
    std::fs::write(&log, "").unwrap();
    let config = dir.path().join("logjail.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
store:
  path: {dir}/state.db
control:
  socket: {socket}
docker:
  enabled: false
metrics:
  enabled: false
firewall:
  chain_prefix: ljflood
filters:
  closing:
    failregex:
      - '^bench over from <HOST>$'
jails:
  sshd:
    filter: sshd
    maxretry: {MAXRETRY}
    findtime: 60s
    bantime: 1h
    sources:
      - file: {log}
  closing:
    filter: closing
    maxretry: 1
    sources:
      - file: {log}
"#,
            dir = dir.path().display(),
            socket = socket.display(),
            log = log.display(),
        ),
    )
    .unwrap();

    // `unshare --net` execs the daemon in a fresh network namespace: the child is logjail.
    let child = Command::new("unshare")
        .args(["--net", "--"])
        .arg(binary())
        .arg("run")
        .arg("-c")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let daemon = Daemon(child);
    let started = Instant::now();
    while status(&socket, "sshd").get("name").is_none() {
        assert!(started.elapsed() < Duration::from_secs(30), "daemon start");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (idle_rss, _) = memory_kib(pid);

    // The flood: every line stamped now, in syslog's local time, so all of it is recent.
    let stamp = chrono::Local::now().format("%b %e %H:%M:%S").to_string();
    let spacing = lines / ATTACKER_FAILURES;
    let begun = Instant::now();
    {
        let mut out = BufWriter::with_capacity(
            1 << 20,
            std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
        );
        for i in 0..lines {
            let host = Ipv4Addr::from(0x6440_0000u32 + u32::try_from(i).unwrap()).to_string();
            syslog_line(&mut out, &stamp, i, &host);
            if i % spacing == spacing / 2 {
                syslog_line(&mut out, &stamp, i, ATTACKER);
            }
        }
        writeln!(
            out,
            "{stamp} bench benchd[1]: bench over from {CLOSING_HOST}"
        )
        .unwrap();
        out.flush().unwrap();
    }
    let written = begun.elapsed();
    let mut peak_during = 0;
    let processed = loop {
        let (rss, _) = memory_kib(pid);
        peak_during = peak_during.max(rss);
        if banned(&socket)
            .iter()
            .any(|(jail, host)| jail == "closing" && host == CLOSING_HOST)
        {
            break begun.elapsed();
        }
        assert!(
            begun.elapsed() < Duration::from_secs(600),
            "flood processed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (after_rss, peak) = memory_kib(pid);
    let bans = banned(&socket);
    let attacker_banned = bans
        .iter()
        .any(|(jail, host)| jail == "sshd" && host == ATTACKER);
    let tracked = status(&socket, "sshd");

    println!(
        "flood: {lines} distinct addresses, 1 attacker x {ATTACKER_FAILURES} failures (maxretry {MAXRETRY}), findtime 60s"
    );
    println!(
        "written in {:.2} s; processed in {:.2} s ({:.0} lines/s)",
        written.as_secs_f64(),
        processed.as_secs_f64(),
        (lines + ATTACKER_FAILURES) as f64 / processed.as_secs_f64()
    );
    println!(
        "RSS idle {}; peak (VmHWM) {}; right after {}",
        mib(idle_rss),
        mib(peak),
        mib(after_rss)
    );
    println!("attacker banned: {attacker_banned}");
    println!(
        "sshd jail right after: currently_failed {} total_failed {}",
        tracked
            .get("currently_failed")
            .unwrap_or(&serde_json::Value::Null),
        tracked
            .get("total_failed")
            .unwrap_or(&serde_json::Value::Null)
    );
    let watch = Instant::now();
    while watch.elapsed() < settle {
        std::thread::sleep(Duration::from_secs(15));
        let (rss, _) = memory_kib(pid);
        let failed = status(&socket, "sshd")
            .get("currently_failed")
            .cloned()
            .unwrap_or_default();
        println!(
            "  +{:>3} s after processing: RSS {} (currently_failed {failed})",
            (processed + watch.elapsed()).as_secs(),
            mib(rss)
        );
    }
    drop(daemon);
    assert!(attacker_banned, "the hidden attacker must be banned");
}
