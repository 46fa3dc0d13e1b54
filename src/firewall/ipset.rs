//! The `ipset` program: one `hash:ip` set per jail and family, entries with their own
//! timeout so that bans end in the kernel even when logjail is not running.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use super::FirewallError;
use super::backend::run;
use super::names::Family;

const IPSET: &str = "ipset";
/// The longest timeout ipset accepts for an entry (about 24.8 days). Longer bans are written
/// without timeout and removed by logjail when they end.
pub const MAX_TIMEOUT_SECS: u64 = 2_147_483;
/// Upper bound on entries per set; ipset's default of 65,536 is too few for large attacks.
pub const MAX_ELEMENTS: u32 = 4_194_304;
/// Smallest starting hash size; the kernel doubles it as the set grows.
const HASH_SIZE: u32 = 4096;
/// Largest starting hash size asked for (8 MB of buckets); past it the kernel grows the hash.
const MAX_HASH_SIZE: u32 = 1 << 20;

/// What `ipset list -t` says about one set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetHeader {
    /// `hash:ip`, …: a set of another type under our name cannot be reused.
    pub kind: String,
    /// `inet` or `inet6`.
    pub family: String,
    /// Whether entries can carry timeouts.
    pub has_timeout: bool,
    /// Entries in the set, including timed-out ones the kernel has not collected yet.
    pub entries: usize,
}

impl SetHeader {
    /// Whether logjail can use this set for a family as it is.
    pub fn fits(&self, family: Family) -> bool {
        self.kind == "hash:ip" && self.family == family.ipset_family() && self.has_timeout
    }
}

/// Every set's header, by name, in one call.
pub fn list_headers() -> Result<HashMap<String, SetHeader>, FirewallError> {
    let listing = run(IPSET, &["list", "-t"], None)?;
    Ok(parse_headers(&listing))
}

fn parse_headers(listing: &str) -> HashMap<String, SetHeader> {
    let mut sets = HashMap::new();
    let mut name: Option<String> = None;
    let mut header = SetHeader {
        kind: String::new(),
        family: String::new(),
        has_timeout: false,
        entries: 0,
    };
    for line in listing.lines() {
        if let Some(value) = line.strip_prefix("Name: ") {
            if let Some(done) = name.take() {
                sets.insert(done, header.clone());
            }
            name = Some(value.trim().to_string());
            header = SetHeader {
                kind: String::new(),
                family: String::new(),
                has_timeout: false,
                entries: 0,
            };
        } else if let Some(value) = line.strip_prefix("Type: ") {
            header.kind = value.trim().to_string();
        } else if let Some(value) = line.strip_prefix("Header: ") {
            let words: Vec<&str> = value.split_whitespace().collect();
            for pair in words.windows(2) {
                if pair[0] == "family" {
                    header.family = pair[1].to_string();
                }
            }
            header.has_timeout = words.contains(&"timeout");
        } else if let Some(value) = line.strip_prefix("Number of entries: ") {
            header.entries = value.trim().parse().unwrap_or(0);
        }
    }
    if let Some(done) = name {
        sets.insert(done, header);
    }
    sets
}

/// Creates a jail's set with a hash sized for `room` entries, or keeps the one that exists
/// (`-exist`, whatever its size).
pub fn create(name: &str, family: Family, room: usize) -> Result<(), FirewallError> {
    let hash_size = hash_size_for(room).to_string();
    let max_elements = MAX_ELEMENTS.to_string();
    run(
        IPSET,
        &[
            "create",
            name,
            "hash:ip",
            "family",
            family.ipset_family(),
            "hashsize",
            &hash_size,
            "maxelem",
            &max_elements,
            "timeout",
            "0",
            "-exist",
        ],
        None,
    )
    .map(drop)
}

/// A power of two with a bucket for each of `room` entries, within the bounds.
fn hash_size_for(room: usize) -> u32 {
    u32::try_from(room)
        .unwrap_or(u32::MAX)
        .clamp(HASH_SIZE, MAX_HASH_SIZE)
        .next_power_of_two()
}

/// The entries of a set with their remaining seconds (`0`: no timeout).
pub fn entries(name: &str) -> Result<Vec<(IpAddr, u64)>, FirewallError> {
    let saved = run(IPSET, &["save", name], None)?;
    Ok(parse_entries(&saved))
}

fn parse_entries(saved: &str) -> Vec<(IpAddr, u64)> {
    saved
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next() != Some("add") {
                return None;
            }
            let _set = words.next()?;
            let address = words.next()?.parse::<IpAddr>().ok()?;
            let mut timeout = 0;
            while let Some(word) = words.next() {
                if word == "timeout" {
                    timeout = words.next()?.parse().ok()?;
                }
            }
            Some((address, timeout))
        })
        .collect()
}

/// The `timeout` word of an entry: ipset's limit caps it, and a permanent ban has none.
pub fn timeout_for(remaining_secs: Option<u64>) -> u64 {
    match remaining_secs {
        Some(secs) if secs <= MAX_TIMEOUT_SECS => secs.max(1),
        _ => 0,
    }
}

pub fn flush(set: &str) -> Result<(), FirewallError> {
    run(IPSET, &["flush", set], None).map(drop)
}

pub fn destroy(set: &str) -> Result<(), FirewallError> {
    run(IPSET, &["destroy", set], None).map(drop)
}

/// A batch for `ipset restore`: thousands of changes in one process, or in two at once when
/// the batch is large (a new fleet member's 100,000 bans): ipset's parsing is the cost, and it
/// runs on both cores. Each address always goes to the same half, so the changes to one
/// address keep their order.
#[derive(Debug, Default)]
pub struct Batch {
    halves: [String; 2],
    lines: usize,
}

/// Lines from which a batch is split over two processes.
const PARALLEL_FROM: usize = 20_000;

fn half_of(host: IpAddr) -> usize {
    let last = match host {
        IpAddr::V4(address) => address.octets()[3],
        IpAddr::V6(address) => address.octets()[15],
    };
    usize::from(last & 1)
}

impl Batch {
    pub fn add(&mut self, set: &str, host: IpAddr, timeout: u64) {
        // Writing to a String cannot fail.
        let _ = writeln!(
            self.halves[half_of(host)],
            "add {set} {host} timeout {timeout}"
        );
        self.lines += 1;
    }

    pub fn del(&mut self, set: &str, host: IpAddr) {
        let _ = writeln!(self.halves[half_of(host)], "del {set} {host}");
        self.lines += 1;
    }

    /// Runs the batch; `-exist` makes re-adding refresh and deleting an absent entry fine.
    pub fn apply(self) -> Result<(), FirewallError> {
        fn restore(script: &str) -> Result<(), FirewallError> {
            if script.is_empty() {
                return Ok(());
            }
            run(IPSET, &["restore", "-exist"], Some(script.as_bytes())).map(drop)
        }
        let [first, second] = self.halves;
        if self.lines < PARALLEL_FROM {
            return restore(&(first + &second));
        }
        std::thread::scope(|scope| {
            let other = scope.spawn(|| restore(&second));
            let mine = restore(&first);
            // `restore` does not panic; a panic there would be a bug worth surfacing.
            let theirs = other
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            mine.and(theirs)
        })
    }
}

/// A long-running `ipset -` (interactive mode) for single adds and deletes: starting a
/// process costs 3-5 ms on a small VM, a line to a running one about 0.1 ms.
///
/// ipset buffers its standard output when it is not a terminal, so its prompt cannot mark
/// the end of a command; its errors go unbuffered to standard error. After each command a
/// deliberately incomplete one (`add logjail-sync`) is sent: its error text, learnt at start
/// so that no ipset version's wording is assumed, marks the end, and anything before it is
/// the real command's error.
pub struct Session {
    child: Child,
    stdin: ChildStdin,
    chunks: Receiver<Vec<u8>>,
    marker: Vec<u8>,
}

const SENTINEL: &[u8] = b"add logjail-sync\n";
/// How long a command may take before the session is given up (then every command spawns
/// its own `ipset` again).
const SESSION_TIMEOUT: Duration = Duration::from_secs(5);

impl Session {
    /// Starts a session, or explains why none could be started.
    pub fn start() -> Result<Session, String> {
        let mut child = Command::new(IPSET)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot start `ipset -`: {error}"))?;
        let (Some(stdin), Some(mut stderr)) = (child.stdin.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("`ipset -` has no pipes".to_string());
        };
        let (sender, chunks) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("logjail-ipset".to_string())
            .spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(read) = stderr.read(&mut buffer) {
                    if read == 0 || sender.send(buffer[..read].to_vec()).is_err() {
                        break;
                    }
                }
            })
            .map_err(|error| format!("cannot start the ipset reader: {error}"))?;
        let mut session = Session {
            child,
            stdin,
            chunks,
            marker: Vec::new(),
        };
        session.send(SENTINEL)?;
        let mut marker = session.next_chunk(SESSION_TIMEOUT)?;
        // The error may come in more than one write; it is complete once ipset goes quiet.
        while let Ok(more) = session.next_chunk(Duration::from_millis(200)) {
            marker.extend(more);
        }
        if marker.is_empty() {
            return Err("ipset printed nothing for an incomplete command".to_string());
        }
        session.marker = marker;
        // Proof that the marker is stable before relying on it.
        session.send(SENTINEL)?;
        let echo = session.until_marker()?;
        if !echo.is_empty() {
            return Err(format!(
                "ipset's answer changed: {}",
                String::from_utf8_lossy(&echo)
            ));
        }
        Ok(session)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stdin
            .write_all(bytes)
            .and_then(|()| self.stdin.flush())
            .map_err(|error| format!("ipset session: {error}"))
    }

    fn next_chunk(&self, timeout: Duration) -> Result<Vec<u8>, String> {
        self.chunks
            .recv_timeout(timeout)
            .map_err(|_| "ipset session: no answer".to_string())
    }

    /// Reads until the marker; returns what came before it.
    fn until_marker(&mut self) -> Result<Vec<u8>, String> {
        let deadline = std::time::Instant::now() + SESSION_TIMEOUT;
        let mut output = Vec::new();
        while !output.ends_with(&self.marker) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            output.extend(self.next_chunk(left)?);
        }
        output.truncate(output.len() - self.marker.len());
        Ok(output)
    }

    /// Runs one command line (`add -exist SET IP timeout N`). `Err(Ok(error))`: the command
    /// failed; `Err(Err(reason))`: the session broke and must not be used again.
    pub fn run(&mut self, line: &str) -> Result<(), Result<FirewallError, String>> {
        let mut input = line.as_bytes().to_vec();
        input.push(b'\n');
        input.extend_from_slice(SENTINEL);
        self.send(&input).map_err(Err)?;
        let errors = self.until_marker().map_err(Err)?;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Ok(FirewallError::Command {
                command: format!("ipset {line}"),
                status: None,
                stderr: String::from_utf8_lossy(&errors).trim().to_string(),
            }))
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_sizes_are_powers_of_two_with_a_bucket_per_entry_within_bounds() {
        assert_eq!(hash_size_for(0), HASH_SIZE);
        assert_eq!(hash_size_for(4096), 4096);
        assert_eq!(hash_size_for(4097), 8192);
        assert_eq!(hash_size_for(100_000), 131_072);
        assert_eq!(hash_size_for(usize::MAX), MAX_HASH_SIZE);
    }

    #[test]
    fn headers_of_several_sets() {
        let listing = "Name: a-4\nType: hash:ip\nRevision: 6\nHeader: family inet hashsize 1024 maxelem 65536 timeout 0 bucketsize 12 initval 0x1\nSize in memory: 344\nReferences: 1\nNumber of entries: 2\nName: b\nType: hash:net\nRevision: 7\nHeader: family inet6 hashsize 1024 maxelem 65536 bucketsize 12 initval 0x2\nSize in memory: 1\nReferences: 0\nNumber of entries: 0\n";
        let sets = parse_headers(listing);
        assert_eq!(sets["a-4"].entries, 2);
        assert!(sets["a-4"].fits(Family::V4));
        assert!(!sets["a-4"].fits(Family::V6));
        assert_eq!(sets["b"].family, "inet6");
        assert!(!sets["b"].fits(Family::V6), "hash:net without timeout");
    }

    #[test]
    fn saved_entries_with_and_without_timeout() {
        let saved = "create s hash:ip family inet6 hashsize 1024 maxelem 65536 timeout 0\nadd s 2001:db8::1 timeout 99\nadd s 2001:db8::2 timeout 0\n";
        assert_eq!(
            parse_entries(saved),
            [
                ("2001:db8::1".parse().unwrap(), 99),
                ("2001:db8::2".parse().unwrap(), 0)
            ]
        );
    }

    #[test]
    fn timeouts_are_capped_to_what_ipset_accepts() {
        assert_eq!(timeout_for(None), 0);
        assert_eq!(
            timeout_for(Some(0)),
            1,
            "a ban about to end still needs a timeout"
        );
        assert_eq!(timeout_for(Some(600)), 600);
        assert_eq!(timeout_for(Some(MAX_TIMEOUT_SECS + 1)), 0);
    }
}
