//! Every built-in filter against its fixture file `tests/fixtures/filters/<name>.yaml`.
//!
//! A fixture is a list of raw log lines with the address (and user) the filter must find, or
//! `host: null` when the line is no failure. Lines go through the same envelope decoding
//! (syslog, Docker json-file, CRI, bare) and engine as in production. Each fixture file must
//! hold failures, non-failures and IPv6, and every failregex must be exercised by some line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use logjail::duration::BanTime;
use logjail::filter::envelope::Decoder;
use logjail::filter::{Filter, Verdict, builtin};
use logjail::jail::BanOrder;
use logjail::jail::task::announce_ban;
use serde::Deserialize;

/// One fixture line and what the filter must make of it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sample {
    /// The raw line, envelope included.
    line: String,
    /// The address the filter must report; `None` when the line is no failure.
    host: Option<IpAddr>,
    /// The user the filter must capture, when given.
    #[serde(default)]
    user: Option<String>,
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/filters")
}

fn load(name: &str) -> Vec<Sample> {
    let path = fixtures_dir().join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "built-in filter {name} has no fixture {}: {e}",
            path.display()
        )
    });
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn compile(name: &str) -> Filter {
    let spec = builtin::spec(name).unwrap();
    Filter::compile(name, &spec).unwrap()
}

/// Runs one raw line through a fresh decoder and the filter.
fn judge(filter: &Filter, line: &str) -> Verdict {
    let mut decoder = Decoder::new();
    let record = decoder
        .push_at(line, now())
        .unwrap_or_else(|| panic!("fixture line is a partial line: {line}"));
    filter.evaluate_at(&record, now())
}

#[test]
fn every_fixture_line_gives_the_expected_host_and_user() {
    let mut problems = Vec::new();
    for name in builtin::names() {
        let filter = compile(name);
        for sample in load(name) {
            let verdict = judge(&filter, &sample.line);
            let (host, user) = match &verdict {
                Verdict::Failure(failure) => (Some(failure.host), failure.user.clone()),
                Verdict::Ignored { .. } | Verdict::NotAClient { .. } | Verdict::Missed => {
                    (None, None)
                }
            };
            if host != sample.host {
                problems.push(format!(
                    "{name}: expected host {:?}, got {verdict:?}\n    {}",
                    sample.host, sample.line
                ));
            } else if sample.user.is_some() && user != sample.user {
                problems.push(format!(
                    "{name}: expected user {:?}, got {user:?}\n    {}",
                    sample.user, sample.line
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} fixture line(s) wrong:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_builtin_has_failures_non_failures_and_ipv6_in_its_fixture() {
    for name in builtin::names() {
        let samples = load(name);
        assert!(
            samples.iter().any(|s| s.host.is_some()),
            "{name}: no failure line"
        );
        assert!(
            samples.iter().any(|s| s.host.is_none()),
            "{name}: no non-failure line"
        );
        assert!(
            samples.iter().any(|s| s.host.is_some_and(|h| h.is_ipv6())),
            "{name}: no IPv6 failure line"
        );
    }
}

#[test]
fn every_failregex_is_exercised_by_a_fixture() {
    for name in builtin::names() {
        let filter = compile(name);
        let used: BTreeSet<usize> = load(name)
            .iter()
            .filter_map(|sample| match judge(&filter, &sample.line) {
                Verdict::Failure(failure) => Some(failure.failregex_index),
                Verdict::Ignored {
                    failregex_index, ..
                } => Some(failregex_index),
                Verdict::NotAClient { .. } | Verdict::Missed => None,
            })
            .collect();
        let unused: Vec<usize> = (0..filter.failregex_count())
            .filter(|i| !used.contains(i))
            .collect();
        assert!(
            unused.is_empty(),
            "{name}: failregex {unused:?} matched by no fixture line"
        );
    }
}

/// Where `host` is written in `line` as a whole address (not inside a longer one).
fn address_spans(line: &str, host: &str) -> Vec<usize> {
    let part_of_address = |c: char| c.is_ascii_hexdigit() || c == '.' || c == ':';
    line.match_indices(host)
        .map(|(start, _)| start)
        .filter(|&start| {
            let before = line[..start].chars().next_back();
            let after = line[start + host.len()..].chars().next();
            // A port after the address (`1.2.3.4:5060`) is fine; more address is not.
            let after_ok = match after {
                None => true,
                Some(':') => line[start + host.len() + 1..]
                    .chars()
                    .next()
                    .is_none_or(|c| !c.is_ascii_hexdigit() || host.contains('.')),
                Some(c) => !part_of_address(c),
            };
            before.is_none_or(|c| !part_of_address(c)) && after_ok
        })
        .collect()
}

#[test]
fn fixture_failures_with_a_non_client_address_are_refused() {
    // Each fixture failure whose address is written once, with that address replaced by one
    // that is never a client of the same family: no failure, and the filter names the
    // address it refused; the unspecified address is reported as a failure of itself (as
    // Fail2Ban reports it), which the jail refuses to count.
    let replacements = |host: IpAddr| -> &'static [&'static str] {
        if host.is_ipv4() {
            &["0.0.0.0", "224.0.0.1", "239.255.255.250", "255.255.255.255"]
        } else {
            &["::", "ff02::1", "ff0e::fb"]
        }
    };
    let mut problems = Vec::new();
    let mut checked = 0;
    for name in builtin::names() {
        let filter = compile(name);
        for sample in load(name) {
            let Some(host) = sample.host else { continue };
            let written = host.to_string();
            let spans = address_spans(&sample.line, &written);
            let [start] = spans.as_slice() else { continue };
            for replacement in replacements(host) {
                let line = format!(
                    "{}{replacement}{}",
                    &sample.line[..*start],
                    &sample.line[start + written.len()..]
                );
                let expected: IpAddr = replacement.parse().unwrap();
                match judge(&filter, &line) {
                    Verdict::NotAClient { address, .. } if address == expected => checked += 1,
                    Verdict::Failure(failure)
                        if expected.is_unspecified()
                            && failure.host == expected
                            && logjail::address::not_a_client(failure.host).is_some() =>
                    {
                        checked += 1
                    }
                    other => problems.push(format!("{name}: got {other:?}\n    {line}")),
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} line(s) not refused:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(checked > 300, "only {checked} lines checked");
}

#[test]
fn every_fixture_file_belongs_to_a_builtin() {
    let names: BTreeSet<&str> = builtin::names().collect();
    for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let stem = path.file_stem().unwrap().to_str().unwrap();
            assert!(
                names.contains(stem),
                "{} has no built-in filter",
                path.display()
            );
        }
    }
}

/// Collects what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The lines logjail's own ban announcement writes, in the text or the JSON log format.
fn ban_log_lines(jail: &str, host: &str, json: bool) -> Vec<String> {
    let captured = Captured::default();
    let writer = captured.clone();
    let builder = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false);
    let order = BanOrder {
        jail: jail.to_string(),
        host: host.parse().unwrap(),
        failures: 5,
        bantime: BanTime::Finite(Duration::from_secs(600)),
        ban_count: 2,
        start: now(),
        end: Some(now() + chrono::Duration::minutes(10)),
        matches: vec![format!("Failed password for root from {host} port 22 ssh2")],
    };
    if json {
        tracing::subscriber::with_default(builder.json().finish(), || announce_ban(&order, None));
    } else {
        tracing::subscriber::with_default(builder.finish(), || announce_ban(&order, None));
    }
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    text.lines().map(str::to_string).collect()
}

#[test]
fn recidive_reads_the_ban_lines_logjail_writes() {
    // The recidive filter and logjail's ban announcement must agree on the line format: this
    // runs the real announcement through the real subscriber formats, raw and wrapped the way
    // a container runtime stores logjail's stderr.
    let filter = compile("recidive");
    for json in [false, true] {
        for host in ["198.51.100.7", "2001:db8::7"] {
            let lines = ban_log_lines("sshd", host, json);
            assert_eq!(lines.len(), 1, "{lines:?}");
            let line = &lines[0];
            let docker = serde_json::json!({
                "log": format!("{line}\n"),
                "stream": "stderr",
                "time": "2026-11-26T07:00:01.123456789Z",
            })
            .to_string();
            let cri = format!("2026-11-26T07:00:01.123456789Z stderr F {line}");
            for raw in [line, &docker, &cri] {
                match judge(&filter, raw) {
                    Verdict::Failure(failure) => {
                        assert_eq!(failure.host, host.parse::<IpAddr>().unwrap(), "{raw}")
                    }
                    other => panic!("recidive missed logjail's ban line ({other:?}): {raw}"),
                }
            }
            let own = &ban_log_lines("recidive", host, json)[0];
            assert!(
                !matches!(judge(&filter, own), Verdict::Failure(_)),
                "recidive counted its own ban: {own}"
            );
        }
    }
}

#[test]
fn a_container_line_past_the_length_cap_is_never_judged_by_its_cut() {
    // Regression: the partial-line joiner used to cut a joined line at MAX_LINE_BYTES and hand
    // the head on. A user name long enough to put its own " from 6.6.6.6 port 22" right at the
    // cap then made sshd's anchored pattern read the forged address as the client.
    use logjail::filter::envelope::MAX_LINE_BYTES;
    let filter = compile("sshd");
    let prefix = "Invalid user ";
    let forged = " from 6.6.6.6 port 22";
    let padding = "a".repeat(MAX_LINE_BYTES - prefix.len() - forged.len());
    let message = format!("{prefix}{padding}{forged} from 198.51.100.9 port 4242");
    let chunks: Vec<&str> = message
        .as_bytes()
        .chunks(16 * 1024)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    let mut decoder = Decoder::new();
    for (index, chunk) in chunks.iter().enumerate() {
        let tag = if index + 1 == chunks.len() { 'F' } else { 'P' };
        let line = format!("2026-11-26T07:00:01Z stderr {tag} {chunk}");
        if let Some(record) = decoder.push_at(&line, now())
            && let Verdict::Failure(failure) = filter.evaluate_at(&record, now())
        {
            panic!(
                "a line cut at the cap was judged a failure of {}",
                failure.host
            );
        }
    }
}
