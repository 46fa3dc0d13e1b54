//! Shared by the firewall tests: network namespaces with veth links, entering them from a
//! thread, real TCP listeners and clients, and guards that clean up by name.
//!
//! Every namespace, link and chain prefix is unique to the test (process id plus a counter),
//! and traffic only ever goes to addresses inside namespaces the test made.

#![allow(dead_code)]

pub mod docker_host;

use std::fs::File;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use logjail::clock::Clock;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call: `{stem}{pid}{n}`, at most 15 characters
/// (the limit for interface names).
pub fn unique(stem: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{stem}{}{n}", std::process::id() % 100_000);
    assert!(name.len() <= 15, "{name} is too long for an interface name");
    name
}

/// Runs a program and returns stdout; panics with its stderr when it fails.
pub fn sh(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a program and ignores how it went (clean-up of what may already be gone).
pub fn sh_quiet(program: &str, args: &[&str]) {
    let _ = Command::new(program).args(args).output();
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(stem: &str) -> Netns {
        let name = unique(stem);
        sh("ip", &["netns", "add", &name]);
        sh("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    /// Runs `f` on a new thread that lives in this namespace; every process it starts and
    /// every thread it spawns is in the namespace too.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .expect("thread in namespace panicked")
    }

    /// A command line run inside the namespace.
    pub fn sh(&self, program: &str, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        sh("ip", &full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        sh_quiet("ip", &["netns", "del", &self.name]);
    }
}

/// A bridge on the host with two client namespaces behind it, A (`.2`) and B (`.3`), on a
/// /24 in `10.NET.0.0/16` that no route of the host covers yet; the host is `.1`. Clients
/// reach the host's published ports as outside clients would. The bridge goes on drop (the
/// namespaces with their own drop).
pub struct BridgedClients {
    pub bridge: String,
    pub host_ip: IpAddr,
    pub a_ip: IpAddr,
    pub b_ip: IpAddr,
    pub a: Netns,
    pub b: Netns,
}

impl BridgedClients {
    pub fn new(net: u8) -> BridgedClients {
        let routes = sh("ip", &["-4", "route", "show"]);
        let start = std::process::id() % 200;
        let subnet = (0..200)
            .map(|offset| format!("10.{net}.{}", 20 + (start + offset) % 200))
            .find(|subnet| !routes.contains(&format!("{subnet}.")))
            .expect("a free test subnet");
        let bridge = unique("ljbr");
        sh("ip", &["link", "add", &bridge, "type", "bridge"]);
        sh(
            "ip",
            &["addr", "add", &format!("{subnet}.1/24"), "dev", &bridge],
        );
        sh("ip", &["link", "set", &bridge, "up"]);
        let a = Netns::new("ljca");
        let b = Netns::new("ljcb");
        for (ns, host) in [(&a, 2), (&b, 3)] {
            let host_end = unique("ljh");
            let client_end = unique("ljc");
            sh(
                "ip",
                &[
                    "link",
                    "add",
                    &host_end,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &client_end,
                    "netns",
                    &ns.name,
                ],
            );
            sh("ip", &["link", "set", &host_end, "master", &bridge, "up"]);
            let address = format!("{subnet}.{host}/24");
            sh(
                "ip",
                &["-n", &ns.name, "addr", "add", &address, "dev", &client_end],
            );
            sh("ip", &["-n", &ns.name, "link", "set", &client_end, "up"]);
        }
        let ip = |host: u8| format!("{subnet}.{host}").parse().unwrap();
        BridgedClients {
            bridge,
            host_ip: ip(1),
            a_ip: ip(2),
            b_ip: ip(3),
            a,
            b,
        }
    }
}

impl Drop for BridgedClients {
    fn drop(&mut self) {
        sh_quiet("ip", &["link", "del", &self.bridge]);
    }
}

/// Moves the calling thread into the namespace at `path`.
pub fn enter(path: &str) {
    let file = File::open(path).unwrap_or_else(|error| panic!("{path}: {error}"));
    // SAFETY: setns on a valid namespace fd only changes this thread's network namespace.
    let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        result,
        0,
        "setns {path}: {}",
        std::io::Error::last_os_error()
    );
}

/// Links `client` to `server` with a veth pair: `server_ip`/`client_ip` on a /24 and the
/// IPv6 pair on a /64 (no duplicate address detection, so they work at once).
pub fn link(server: &Netns, client: &Netns, v4: (&str, &str), v6: (&str, &str)) {
    let server_end = unique("ljs");
    let client_end = unique("ljc");
    sh(
        "ip",
        &[
            "link",
            "add",
            &server_end,
            "netns",
            &server.name,
            "type",
            "veth",
            "peer",
            "name",
            &client_end,
            "netns",
            &client.name,
        ],
    );
    for (ns, dev, address4, address6) in [
        (server, &server_end, v4.0, v6.0),
        (client, &client_end, v4.1, v6.1),
    ] {
        sh(
            "ip",
            &[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{address4}/24"),
                "dev",
                dev,
            ],
        );
        sh(
            "ip",
            &[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{address6}/64"),
                "dev",
                dev,
                "nodad",
            ],
        );
        sh("ip", &["-n", &ns.name, "link", "set", dev, "up"]);
    }
    // A veth delivers a packet in the sender's own call: the server's ICMP error for a SYN
    // reaches the client while its connect() still holds the socket, and TCP drops it
    // (TcpExtLockDroppedIcmps; IPv6 notices only at the SYN retransmit, 1 s later). A real
    // client receives on its own time. Steering the client's receive work to CPU 1 while
    // clients connect from CPU 0 (see `try_connect`) gives the same here.
    if cpus() > 1 {
        let rps = format!("/sys/class/net/{client_end}/queues/rx-0/rps_cpus");
        client.sh("sh", &["-c", &format!("echo 2 > {rps}")]);
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Pins the calling thread to CPU 0 (see `link`).
fn pin_to_first_cpu() {
    if cpus() < 2 {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity only
    // read and write that set and this thread's affinity.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// How a connection attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Connected,
    /// Refused or unreachable at once, with how long it took.
    Refused(Duration),
    /// No answer within the timeout (a DROP).
    TimedOut,
}

impl Reach {
    pub fn refused_fast(self) -> bool {
        matches!(self, Reach::Refused(took) if took < Duration::from_millis(500))
    }
}

/// Connects to `target` from inside `client`, waiting at most `timeout`.
///
/// A refusal that came only with the SYN retransmit, while the client's TCP counted an ICMP
/// error dropped because connect() still held the socket (see `link`), is an artifact of
/// the veth pair under load, not of the firewall: that attempt is made again (at most
/// three times).
pub fn try_connect(client: &Netns, target: SocketAddr, timeout: Duration) -> Reach {
    client.run(move || {
        pin_to_first_cpu();
        let mut reach = Reach::TimedOut;
        for _ in 0..3 {
            let dropped_before = lock_dropped_icmps();
            reach = connect_once(target, timeout);
            let slow_refusal =
                matches!(reach, Reach::Refused(took) if took >= Duration::from_millis(500));
            if !(slow_refusal && lock_dropped_icmps() > dropped_before) {
                break;
            }
        }
        reach
    })
}

fn connect_once(target: SocketAddr, timeout: Duration) -> Reach {
    let started = Instant::now();
    match TcpStream::connect_timeout(&target, timeout) {
        Ok(_) => Reach::Connected,
        Err(error) if matches!(error.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            Reach::TimedOut
        }
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::ConnectionReset
            ) =>
        {
            Reach::Refused(started.elapsed())
        }
        Err(error) => panic!("connect to {target}: unexpected {error:?}"),
    }
}

/// TcpExtLockDroppedIcmps of the calling thread's namespace.
fn lock_dropped_icmps() -> u64 {
    let netstat = std::fs::read_to_string("/proc/thread-self/net/netstat").unwrap_or_default();
    let lines: Vec<&str> = netstat.lines().collect();
    for pair in lines.chunks(2) {
        if let [names, values] = pair
            && names.starts_with("TcpExt:")
        {
            let at = names
                .split_whitespace()
                .position(|name| name == "LockDroppedIcmps");
            if let Some(at) = at {
                return values
                    .split_whitespace()
                    .nth(at)
                    .and_then(|value| value.parse().ok())
                    .unwrap_or(0);
            }
        }
    }
    0
}

/// Listens on every address of `ns`, IPv4 and IPv6 (one dual-stack socket). The kernel
/// completes handshakes into the backlog, so nothing needs to accept for a connect to
/// succeed; the listener closes when dropped.
pub fn listen(ns: &Netns, port: u16) -> TcpListener {
    ns.run(move || TcpListener::bind(("::", port)).expect("bind [::]"))
}

/// A clock the test moves by hand.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn at(now: DateTime<Utc>) -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(now)))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += chrono::Duration::from_std(by).unwrap();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// A runtime for the async handle, built on the calling thread (so that the firewall thread
/// it starts inherits the thread's namespace).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// `iptables -S` and `ip6tables -S` of the namespace the calling thread is in.
pub fn listing() -> String {
    let mut text = sh("iptables", &["-w", "-S"]);
    text.push_str(&sh("ip6tables", &["-w", "-S"]));
    text
}

/// Lines of `listing()` that mention `prefix`.
pub fn our_lines(prefix: &str) -> Vec<String> {
    let mut lines: Vec<String> = listing()
        .lines()
        .filter(|line| line.contains(prefix))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// Names of sets starting with `prefix`.
pub fn our_sets(prefix: &str) -> Vec<String> {
    let mut sets: Vec<String> = sh("ipset", &["list", "-n"])
        .lines()
        .filter(|name| name.starts_with(prefix))
        .map(str::to_string)
        .collect();
    sets.sort();
    sets
}

/// The timeout ipset reports for `host` in `set`.
pub fn entry_timeout(set: &str, host: &str) -> Option<u64> {
    sh("ipset", &["list", set]).lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(host) && words.next() == Some("timeout"))
            .then(|| words.next().and_then(|t| t.parse().ok()))
            .flatten()
    })
}

/// Removes every chain, jump and set named with `prefix` from the calling thread's namespace
/// when dropped: tests in the host namespace leave nothing behind even when they fail.
pub struct PrefixGuard {
    pub prefix: String,
}

impl Drop for PrefixGuard {
    fn drop(&mut self) {
        let ours = |name: &str| name.starts_with(&format!("{}-", self.prefix));
        for tool in ["iptables", "ip6tables"] {
            let Ok(output) = Command::new(tool).args(["-w", "-S"]).output() else {
                continue;
            };
            let listing = String::from_utf8_lossy(&output.stdout).into_owned();
            for line in listing.lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                if words.first() == Some(&"-A")
                    && !ours(words[1])
                    && words.windows(2).any(|w| w[0] == "-j" && ours(w[1]))
                {
                    let mut args = vec!["-w", "-D"];
                    args.extend_from_slice(&words[1..]);
                    sh_quiet(tool, &args);
                }
            }
            for line in listing.lines() {
                if let Some(chain) = line.strip_prefix("-N ").filter(|c| ours(c)) {
                    sh_quiet(tool, &["-w", "-F", chain]);
                }
            }
            for line in listing.lines() {
                if let Some(chain) = line.strip_prefix("-N ").filter(|c| ours(c)) {
                    sh_quiet(tool, &["-w", "-X", chain]);
                }
            }
        }
        if let Ok(output) = Command::new("ipset").args(["list", "-n"]).output() {
            for set in String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|s| ours(s))
            {
                sh_quiet("ipset", &["destroy", set]);
            }
        }
    }
}
