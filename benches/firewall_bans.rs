//! How fast bans reach the kernel, in both modes, at 10,000 and 100,000 bans: the batch
//! (`ban_many`, as at start), one more ban at that size, a layout check at that size, and the
//! process's memory with the bans held.
//!
//! Runs as root inside a network namespace of its own (iptables and ipset there are private),
//! so the host's firewall is never touched. No packet is sent: the banned addresses come
//! from 198.18.0.0/15, the range reserved for benchmarks.
//!
//! `cargo bench --bench firewall_bans` (everything), `… -- 10000` (one size), `… -- ipset`
//! or `… -- rules` (one mode).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/firewall_support/mod.rs"]
mod firewall_support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use chrono::Utc;
use firewall_support::{Netns, runtime, unique};
use logjail::config::{
    Chain, FirewallAction, FirewallBackend, FirewallConfig, FirewallMode, FirewallTarget, Ports,
    Protocol,
};
use logjail::firewall::{BanRequest, Firewall, FirewallOptions, JailRule};

/// Single bans timed at each size; the median is reported.
const SINGLE_BANS: usize = 21;

fn address(index: usize) -> IpAddr {
    // 198.18.0.0/15 holds 131,072 addresses: enough for every size here.
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    IpAddr::V4(Ipv4Addr::from(base + u32::try_from(index).unwrap()))
}

fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

struct Figures {
    mode: FirewallMode,
    size: usize,
    batch: Duration,
    single: Duration,
    layout_check: Duration,
    unban_one: Duration,
    rss_kib: u64,
}

fn measure(mode: FirewallMode, size: usize) -> Figures {
    let netns = Netns::new("ljbench");
    netns.run(move || {
        runtime().block_on(async move {
            let config = FirewallConfig {
                backend: FirewallBackend::Auto,
                target: FirewallTarget::Docker,
                mode,
                keep_bans_on_exit: false,
                chain_prefix: unique("ljb"),
            };
            let jail = JailRule {
                name: "bench".to_string(),
                chains: vec![Chain::Input, Chain::DockerUser],
                ports: Ports::All,
                protocol: Protocol::All,
                action: FirewallAction::Drop,
                ignoreip: Vec::new(),
            };
            let (firewall, thread) =
                Firewall::start(config, vec![jail], FirewallOptions::default())
                    .await
                    .unwrap();
            let end = Some(Utc::now() + chrono::Duration::hours(2));
            let requests: Vec<BanRequest> = (0..size)
                .map(|index| BanRequest {
                    jail: "bench".to_string(),
                    host: address(index),
                    end,
                })
                .collect();

            let started = Instant::now();
            let outcome = firewall.ban_many(requests).await.unwrap();
            let batch = started.elapsed();
            assert_eq!(outcome.applied, size, "{:?}", outcome.refused.first());

            let mut singles = Vec::new();
            for extra in 0..SINGLE_BANS {
                let started = Instant::now();
                firewall
                    .ban("bench", address(size + extra), end)
                    .await
                    .unwrap();
                singles.push(started.elapsed());
            }

            let started = Instant::now();
            let report = firewall.ensure_layout().await.unwrap();
            let layout_check = started.elapsed();
            assert!(report.is_clean(), "{report:?}");

            let mut unbans = Vec::new();
            for extra in 1..SINGLE_BANS {
                let started = Instant::now();
                assert!(
                    firewall
                        .unban("bench", address(size + extra))
                        .await
                        .unwrap()
                );
                unbans.push(started.elapsed());
            }
            let unban_one = median(unbans);

            let (rss, _) = rss_kib();
            let status = firewall.status().await.unwrap();
            assert_eq!(status.jails[0].bans_v4, size + 1);
            firewall.shutdown(false).await.unwrap();
            thread.join().unwrap();
            Figures {
                mode,
                size,
                batch,
                single: median(singles),
                layout_check,
                unban_one,
                rss_kib: rss,
            }
        })
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wanted: Vec<usize> = args.iter().filter_map(|arg| arg.parse().ok()).collect();
    let modes: Vec<FirewallMode> = [FirewallMode::Ipset, FirewallMode::Rules]
        .into_iter()
        .filter(|mode| {
            let name = format!("{mode:?}").to_lowercase();
            !args.iter().any(|arg| arg == "ipset" || arg == "rules") || args.contains(&name)
        })
        .collect();
    let sizes = if wanted.is_empty() {
        vec![10_000, 100_000]
    } else {
        wanted
    };
    println!(
        "| mode | bans | batch apply | one more ban (median of {SINGLE_BANS}) | unban one (median of {}) | layout check | process RSS |",
        SINGLE_BANS - 1
    );
    println!("|---|---|---|---|---|---|---|");
    for mode in modes {
        for &size in &sizes {
            let figures = measure(mode, size);
            println!(
                "| {:?} | {} | {} | {} | {} | {} | {:.1} MiB |",
                figures.mode,
                figures.size,
                ms(figures.batch),
                ms(figures.single),
                ms(figures.unban_one),
                ms(figures.layout_check),
                figures.rss_kib as f64 / 1024.0
            );
        }
    }
}
