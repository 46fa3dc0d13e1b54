//! Docker source measurements against the real engine (not a timed test: it prints figures).
//!
//! 1. Detection latency: a line handed to a container's stdin (`docker run -i … cat`) until the
//!    ban decision for it, per read mode, over many trials: median, p90, p99, max.
//! 2. Throughput: 50 containers write failure lines together; lines per second until every
//!    line was judged, and whether any was lost.
//! 3. Idle cost: CPU and memory of logjail watching 50 idle containers.
//!
//! Run as root on a machine with Docker and the test images (`scripts/test-images`):
//! `cargo bench --bench docker_latency` (`-- latency`, `-- throughput` or `-- idle` for one
//! part; `LJ_BENCH_TRIALS`, `LJ_BENCH_LINES`, `LJ_BENCH_IDLE_SECS` change the sizes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use logjail::config::Config;
use logjail::daemon::DaemonOptions;
use logjail::messages::DaemonEvent;
use logjail::messages::Origin;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "logjail-test/busybox:local";
const CONTAINERS: usize = 50;

fn docker_cli() -> String {
    std::env::var("DOCKER").unwrap_or_else(|_| "/usr/bin/docker".to_string())
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn docker(args: &[&str]) -> String {
    let output = tokio::process::Command::new(docker_cli())
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Removes the bench's containers, also on panic.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for chunk in self.0.chunks(20) {
            let _ = std::process::Command::new(docker_cli())
                .args(["rm", "-f"])
                .args(chunk)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

struct Daemon {
    events: broadcast::Receiver<DaemonEvent>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

fn start_daemon(read_mode: &str, maxretry: u32) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
filters:
  benchauth:
    failregex:
      - '^auth failure for \S+ from <HOST>$'
docker:
  enabled: true
  read_mode: {read_mode}
defaults:
  maxretry: {maxretry}
  findtime: 1d
  bantime: 1d
jails:
  placeholder:
    manual: true
store:
  path: {}
control:
  socket: {}
metrics:
  enabled: false
log:
  level: warn
"#,
        dir.path().join("db").display(),
        dir.path().join("sock").display()
    );
    let config = Config::from_yaml_str(&yaml, "bench.yaml").unwrap();
    let (events, receiver) = broadcast::channel(1 << 16);
    let options = DaemonOptions {
        events,
        own_addresses: Some(Vec::new()),
        ..DaemonOptions::default()
    };
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        logjail::daemon::run_with(config, options, token)
            .await
            .unwrap();
    });
    Daemon {
        events: receiver,
        shutdown,
        task,
        _dir: dir,
    }
}

impl Daemon {
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

fn origin_name(origin: &Origin) -> &str {
    match origin {
        Origin::Container { name, .. } => name,
        _ => "",
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

/// Waits for the ban of `host`; other events are skipped.
async fn wait_ban(events: &mut broadcast::Receiver<DaemonEvent>, host: IpAddr) {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Ok(Ok(DaemonEvent::Banned { order, .. })) if order.host == host => return,
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => panic!("lagged by {n} events"),
            Ok(Err(error)) => panic!("{error}"),
            Err(_) => panic!("no ban of {host} within 30 s"),
        }
    }
}

async fn latency(read_mode: &str, trials: u64) {
    let pid = std::process::id();
    let name = format!("lj-bench-latency-{read_mode}-{pid}");
    let _cleanup = Cleanup(vec![name.clone()]);
    let mut daemon = start_daemon(read_mode, 1);
    let mut container = tokio::process::Command::new(docker_cli())
        .args(["run", "-i", "--rm", "--name", &name])
        .args(["--label", "logjail.jail.bench.filter=benchauth"])
        .args([IMAGE, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = container.stdin.take().unwrap();
    // Until logjail follows the container, the first line waits: not a measurement.
    stdin
        .write_all(b"auth failure for warmup from 10.99.0.1\n")
        .await
        .unwrap();
    wait_ban(&mut daemon.events, "10.99.0.1".parse().unwrap()).await;
    let mut samples = Vec::new();
    for trial in 0..trials {
        let host: IpAddr = format!("10.99.{}.{}", trial / 250 + 1, trial % 250 + 1)
            .parse()
            .unwrap();
        let line = format!("auth failure for user{trial} from {host}\n");
        let started = Instant::now();
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
        wait_ban(&mut daemon.events, host).await;
        samples.push(started.elapsed());
    }
    drop(stdin);
    let _ = container.wait().await;
    daemon.stop().await;
    samples.sort();
    println!(
        "latency read_mode={read_mode:<4} trials={trials}: median {}, p90 {}, p99 {}, max {}",
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.9)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap()),
    );
}

async fn throughput(read_mode: &str, lines_per_container: u64) {
    let pid = std::process::id();
    let signal_dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..CONTAINERS)
        .map(|i| format!("lj-bench-tp-{read_mode}-{i}-{pid}"))
        .collect();
    let _cleanup = Cleanup(names.clone());
    let mut daemon = start_daemon(read_mode, 100_000_000);
    let mount = format!("{}:/sig:ro", signal_dir.path().display());
    for (i, name) in names.iter().enumerate() {
        let script = format!(
            "echo 'auth failure for ready from 10.97.0.{}'; \
             while [ ! -e /sig/go ]; do sleep 0.05; done; \
             yes 'auth failure for u from 10.98.0.{}' | head -n {lines_per_container}; sleep 3600",
            i + 1,
            i + 1
        );
        docker(&[
            "run",
            "-d",
            "--name",
            name,
            "-v",
            &mount,
            "--label",
            "logjail.jail.bench.filter=benchauth",
            IMAGE,
            "sh",
            "-c",
            &script,
        ])
        .await;
    }
    // Every container is followed once its "ready" line is judged.
    let mut ready = 0;
    while ready < CONTAINERS {
        if let Ok(DaemonEvent::Failure { host, .. }) = daemon.events.recv().await
            && host.to_string().starts_with("10.97.0.")
        {
            ready += 1;
        }
    }
    let cpu_before = cpu_time();
    let started = Instant::now();
    std::fs::write(signal_dir.path().join("go"), b"").unwrap();
    let expected = lines_per_container * CONTAINERS as u64;
    let mut per_origin: HashMap<String, u64> = HashMap::new();
    let mut total = 0;
    let mut lagged = 0;
    while total < expected {
        match tokio::time::timeout(Duration::from_secs(60), daemon.events.recv()).await {
            Ok(Ok(DaemonEvent::Failure { origin, host, .. })) => {
                if host.to_string().starts_with("10.98.0.") {
                    *per_origin
                        .entry(origin_name(&origin).to_string())
                        .or_default() += 1;
                    total += 1;
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => lagged += n,
            Ok(Err(error)) => panic!("{error}"),
            Err(_) => break,
        }
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time() - cpu_before;
    daemon.stop().await;
    let complete = per_origin
        .values()
        .filter(|count| **count == lines_per_container)
        .count();
    println!(
        "throughput read_mode={read_mode:<4} {CONTAINERS} containers × {lines_per_container} lines: \
         {total} of {expected} judged in {:.2} s = {:.0} lines/s; containers complete {complete}/{CONTAINERS}; \
         events missed by the bench (lagged) {lagged}; process CPU {:.1} s ({:.0}% of one core)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64()
    );
}

async fn idle(read_mode: &str, seconds: u64) {
    let pid = std::process::id();
    let names: Vec<String> = (0..CONTAINERS)
        .map(|i| format!("lj-bench-idle-{read_mode}-{i}-{pid}"))
        .collect();
    let _cleanup = Cleanup(names.clone());
    let rss_before = rss_kib();
    let mut daemon = start_daemon(read_mode, 100);
    for (i, name) in names.iter().enumerate() {
        let script = format!(
            "echo 'auth failure for ready from 10.96.0.{}'; sleep 3600",
            i + 1
        );
        docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--label",
            "logjail.jail.bench.filter=benchauth",
            IMAGE,
            "sh",
            "-c",
            &script,
        ])
        .await;
    }
    let mut ready = 0;
    while ready < CONTAINERS {
        if let Ok(DaemonEvent::Failure { host, .. }) = daemon.events.recv().await
            && host.to_string().starts_with("10.96.0.")
        {
            ready += 1;
        }
    }
    let cpu_before = cpu_time();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = cpu_time() - cpu_before;
    let elapsed = started.elapsed();
    let rss = rss_kib();
    daemon.stop().await;
    println!(
        "idle read_mode={read_mode:<4} {CONTAINERS} containers watched for {seconds} s: CPU {:.3} s \
         ({:.2}% of one core); RSS {} MiB (bench process before the daemon: {} MiB)",
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64(),
        rss / 1024,
        rss_before / 1024
    );
}

/// User plus system CPU time of this process.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // CLK_TCK is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test`/nextest run bench targets as tests (or list
    // them with --list): this one has no tests, and must not run a benchmark then.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    assert!(Path::new("/proc/self/stat").exists());
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let runs = |part: &str| wanted.is_empty() || wanted.iter().any(|w| w == part);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let trials = env_number("LJ_BENCH_TRIALS", 300);
        let lines = env_number("LJ_BENCH_LINES", 20_000);
        let idle_secs = env_number("LJ_BENCH_IDLE_SECS", 30);
        for mode in ["auto", "api"] {
            if runs("latency") {
                latency(mode, trials).await;
            }
            if runs("throughput") {
                throughput(mode, lines).await;
            }
            if runs("idle") {
                idle(mode, idle_secs).await;
            }
        }
    });
}
