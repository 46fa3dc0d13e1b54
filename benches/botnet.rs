//! Failures counted fleet-wide (`share_failures`) against a generated botnet, with a real
//! `redis-server` and three real `logjail run` members in network namespaces of their own
//! (tests/fleet_support).
//!
//! Each botnet address makes 2 to 8 tries, 5 to 40 minutes apart, each on one of the three
//! members at random; legit addresses fail 1 to 4 times (typos) in all. maxretry 5, findtime
//! 6 h: every botnet address with 5 tries or more should be banned, no legit one. The tries
//! are written with their times (the last few hours) into each member's log at once, the
//! members read them in time order; run once without sharing failures and once with.
//!
//! Runs as root. No packet is sent. `cargo bench --bench botnet` (`LJ_BOTNET=N` addresses,
//! default 300; `LJ_LEGIT=N`, default 300).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/firewall_support/mod.rs"]
mod firewall_support;
#[path = "../tests/fleet_support/mod.rs"]
mod fleet_support;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fleet_support::{Hub, Member, Redis};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const MEMBERS: usize = 3;
const MAXRETRY: usize = 5;

struct Try {
    at: DateTime<Utc>,
    member: usize,
    address: Ipv4Addr,
}

struct Population {
    tries: Vec<Try>,
    /// Botnet addresses with at least maxretry tries in all: those a fleet-wide count bans.
    due: BTreeSet<Ipv4Addr>,
    botnet: BTreeSet<Ipv4Addr>,
    legit: BTreeSet<Ipv4Addr>,
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Addresses from 198.18.0.0/15, reserved for benchmarks: botnet from .0.0, legit from .128.0.
fn generate(botnet: usize, legit: usize, now: DateTime<Utc>) -> Population {
    let mut rng = StdRng::seed_from_u64(2026);
    let mut population = Population {
        tries: Vec::new(),
        due: BTreeSet::new(),
        botnet: BTreeSet::new(),
        legit: BTreeSet::new(),
    };
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    for index in 0..botnet {
        let address = Ipv4Addr::from(base + u32::try_from(index).unwrap());
        let tries: usize = rng.random_range(2..=8);
        let gaps: Vec<i64> = (1..tries).map(|_| rng.random_range(5..=40)).collect();
        let span: i64 = gaps.iter().sum();
        // The last try somewhere in the last half hour; the first at most 280 min before.
        let mut at = now - chrono::Duration::minutes(span + rng.random_range(1..=30));
        for step in 0..tries {
            if step > 0 {
                at += chrono::Duration::minutes(gaps[step - 1]);
            }
            population.tries.push(Try {
                at,
                member: rng.random_range(0..MEMBERS),
                address,
            });
        }
        population.botnet.insert(address);
        if tries >= MAXRETRY {
            population.due.insert(address);
        }
    }
    for index in 0..legit {
        let address = Ipv4Addr::from(base + 0x8000 + u32::try_from(index).unwrap());
        for _ in 0..rng.random_range(1..=MAXRETRY - 1) {
            population.tries.push(Try {
                at: now - chrono::Duration::minutes(rng.random_range(1..=300)),
                member: rng.random_range(0..MEMBERS),
                address,
            });
        }
        population.legit.insert(address);
    }
    population.tries.sort_by_key(|t| t.at);
    population
}

/// Every address banned on any member.
fn banned(members: &[Member]) -> BTreeSet<Ipv4Addr> {
    members
        .iter()
        .flat_map(|m| {
            m.banned()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn run(
    hub: &mut Hub,
    root: &std::path::Path,
    key: &std::path::Path,
    population: &Population,
    share: bool,
) -> BTreeSet<Ipv4Addr> {
    let names: [&'static str; MEMBERS] = if share {
        ["shared-a", "shared-b", "shared-c"]
    } else {
        ["alone-a", "alone-b", "alone-c"]
    };
    let mut members: Vec<Member> = names
        .iter()
        .map(|name| Member::new(hub, root, name, key, &[]))
        .collect();
    for member in &mut members {
        member.edit_config(|text| {
            text.replace(
                "    maxretry: 2\n",
                &format!(
                    "    maxretry: {MAXRETRY}\n    findtime: 6h\n    share_failures: {share}\n"
                ),
            )
        });
        member.start();
    }
    for member in &members {
        member.wait_connected();
    }
    let mut logs: Vec<String> = vec![String::new(); MEMBERS];
    for t in &population.tries {
        logs[t.member].push_str(&format!(
            "{} login failed from {}\n",
            t.at.format("%Y-%m-%dT%H:%M:%SZ"),
            t.address
        ));
    }
    for (member, text) in members.iter().zip(&logs) {
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(member.dir.join("app.log"))
            .unwrap();
        log.write_all(text.as_bytes()).unwrap();
    }
    // Settled: the same bans for two seconds in a row.
    let mut last = BTreeSet::new();
    let mut stable_since = Instant::now();
    let start = Instant::now();
    while stable_since.elapsed() < Duration::from_secs(2) {
        assert!(start.elapsed() < Duration::from_secs(120), "never settled");
        std::thread::sleep(Duration::from_millis(200));
        let now = banned(&members);
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
    }
    for member in &mut members {
        member.process.as_mut().unwrap().stop();
    }
    last
}

fn main() {
    let botnet = env_count("LJ_BOTNET", 300);
    let legit = env_count("LJ_LEGIT", 300);
    let root = tempfile::tempdir().unwrap();
    let key = root.path().join("fleet.key");
    std::fs::write(&key, "the botnet benchmark's key").unwrap();
    let redis_dir = root.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let mut hub = Hub::new();
    let redis = Redis::start(&hub.ns, &redis_dir);
    let population = generate(botnet, legit, Utc::now());
    println!(
        "botnet: {} addresses ({} with {MAXRETRY}+ tries in all), {} legit, {} log lines over {MEMBERS} members; maxretry {MAXRETRY}, findtime 6h",
        population.botnet.len(),
        population.due.len(),
        population.legit.len(),
        population.tries.len()
    );
    for share in [false, true] {
        redis.cli(&["FLUSHALL"]);
        let banned = run(&mut hub, root.path(), &key, &population, share);
        let botnet_banned = banned.intersection(&population.botnet).count();
        let due_banned = banned.intersection(&population.due).count();
        let legit_banned = banned.intersection(&population.legit).count();
        println!(
            "botnet: share_failures {share}: {botnet_banned} botnet addresses banned ({due_banned} of the {} due), {legit_banned} legit banned",
            population.due.len()
        );
        assert_eq!(legit_banned, 0, "a legit address was banned");
        if share {
            assert_eq!(
                due_banned,
                population.due.len(),
                "fleet-wide counting missed some"
            );
            assert_eq!(botnet_banned, due_banned, "banned under maxretry");
        }
    }
}
