//! The fleet at scale, with a real `redis-server` and real `logjail run` members in network
//! namespaces of their own (tests/fleet_support): 100,000 bans in Redis loaded by a new
//! member into its firewall, and a burst of 10,000 bans on one member reaching another.
//!
//! Runs as root. No packet is sent: the banned addresses come from 198.18.0.0/15, the range
//! reserved for benchmarks.
//!
//! `cargo bench --bench fleet` (both), `… -- load` or `… -- burst` (one).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/firewall_support/mod.rs"]
mod firewall_support;
#[path = "../tests/fleet_support/mod.rs"]
mod fleet_support;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use fleet_support::{Hub, Member, Redis, fill_bans};

const LOADED: usize = 100_000;
const BURST: usize = 10_000;
const KEY: &str = "the fleet's benchmark key";

fn address(index: usize) -> IpAddr {
    // 198.18.0.0/15 holds 131,072 addresses: enough for both runs.
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    IpAddr::V4(Ipv4Addr::from(base + u32::try_from(index).unwrap()))
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// With `LOGJAIL_BENCH_LOGS=1`, prints a member's log: where the time went.
fn show_log(name: &str, member: &Member) {
    if std::env::var_os("LOGJAIL_BENCH_LOGS").is_some() {
        for line in member.log().lines() {
            println!("{name}: {line}");
        }
    }
}

/// A log line's time, in milliseconds since the epoch, and the `host=` it names.
fn stamped_host(line: &str) -> Option<(i64, &str)> {
    let (stamp, rest) = line.split_once(' ')?;
    let at = chrono::DateTime::parse_from_rfc3339(stamp)
        .ok()?
        .timestamp_millis();
    let host = rest
        .split_whitespace()
        .find_map(|w| w.strip_prefix("host="))?;
    Some((at, host))
}

/// For each ban A decided from its log, how long until B applied it from the fleet, sorted.
fn ban_delays(a_log: &str, b_log: &str) -> Vec<i64> {
    let decided: std::collections::HashMap<&str, i64> = a_log
        .lines()
        .filter(|l| l.contains("logjail::ban: ban jail="))
        .filter_map(stamped_host)
        .map(|(at, host)| (host, at))
        .collect();
    let mut delays: Vec<i64> = b_log
        .lines()
        .filter(|l| l.contains("ban from the fleet"))
        .filter_map(stamped_host)
        .filter_map(|(at, host)| decided.get(host).map(|start| at - start))
        .collect();
    delays.sort_unstable();
    delays
}

fn percentile(sorted: &[i64], percent: usize) -> Option<i64> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get(last * percent / 100).copied()
}

fn load(hub: &mut Hub, root: &std::path::Path, key: &std::path::Path) {
    let hosts: Vec<IpAddr> = (0..LOADED).map(address).collect();
    fill_bans(hub, KEY.as_bytes(), "elsewhere", &hosts);
    let mut newcomer = Member::new(hub, root, "new", key, &[]);
    let started = Instant::now();
    newcomer.start();
    let ready = started.elapsed();
    let loaded = wait_for(
        "100,000 bans in the kernel",
        Duration::from_secs(60),
        || newcomer.kernel_entries() >= LOADED,
    );
    let total = started.elapsed();
    println!(
        "fleet load: {LOADED} bans in Redis; new member answering after {:.2} s, all in its ipset after {:.2} s from spawn (checked {:.0} ms later)",
        ready.as_secs_f64(),
        total.as_secs_f64(),
        loaded.as_secs_f64() * 1000.0
    );
    show_log("new", &newcomer);
    newcomer.process.as_mut().unwrap().stop();
}

fn burst(hub: &mut Hub, root: &std::path::Path, key: &std::path::Path) {
    let mut a = Member::new(hub, root, "burst-a", key, &[]);
    let mut b = Member::new(hub, root, "burst-b", key, &[]);
    a.start();
    b.start();
    // Both members past their first sync with Redis: the burst measures the feed, not a start.
    for member in [&a, &b] {
        member.wait_connected();
    }
    let before_a = a.kernel_entries();
    let before_b = b.kernel_entries();
    // Two failures for each of 10,000 new addresses (maxretry 2), in one write.
    let mut text = String::with_capacity(BURST * 64);
    for i in 0..BURST {
        let ip = address(120_000 + i);
        let line = format!("login failed from {ip}\n");
        text.push_str(&line);
        text.push_str(&line);
    }
    let written = Instant::now();
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(a.dir.join("app.log"))
        .unwrap();
    log.write_all(text.as_bytes()).unwrap();
    drop(log);
    let on_a = wait_for("the burst banned on A", Duration::from_secs(60), || {
        a.kernel_entries() >= before_a + BURST
    });
    let on_b = wait_for("the burst on B", Duration::from_secs(60), || {
        b.kernel_entries() >= before_b + BURST
    });
    println!(
        "fleet burst: {BURST} bans from A's log: all in A's ipset {:.2} s after the write, all in B's {:.2} s after that ({:.2} s from the write)",
        on_a.as_secs_f64(),
        on_b.as_secs_f64(),
        written.elapsed().as_secs_f64()
    );
    let delays = ban_delays(&a.log(), &b.log());
    if let (Some(p50), Some(p99), Some(max)) = (
        percentile(&delays, 50),
        percentile(&delays, 99),
        delays.last(),
    ) {
        println!(
            "fleet burst: per ban, from A's decision to B's (their logs' times, {} bans): p50 {p50} ms, p99 {p99} ms, max {max} ms",
            delays.len()
        );
    }
    show_log("burst-a", &a);
    show_log("burst-b", &b);
    a.process.as_mut().unwrap().stop();
    b.process.as_mut().unwrap().stop();
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| f == name);
    let root = tempfile::tempdir().unwrap();
    let key = root.path().join("fleet.key");
    std::fs::write(&key, KEY).unwrap();
    let redis_dir = root.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let mut hub = Hub::new();
    let _redis = Redis::start(&hub.ns, &redis_dir);
    if wanted("load") {
        load(&mut hub, root.path(), &key);
    }
    if wanted("burst") {
        burst(&mut hub, root.path(), &key);
    }
}
