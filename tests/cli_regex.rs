//! `logjail regex --json` run as a user runs it: every built-in filter's samples, each bare
//! message also wrapped in syslog, Docker json-file and CRI envelopes, must give the same host
//! on the same input line, and nothing on lines that are not failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use logjail::filter::builtin;
use logjail::filter::envelope::{Decoder, EnvelopeKind};

const BINARY: &str = env!("CARGO_BIN_EXE_logjail");

/// A program name a syslog daemon would write for the service, when the filter restricts it.
fn program_for(filter: &str) -> &'static str {
    match filter {
        "sshd" => "sshd",
        "asterisk" => "asterisk",
        "postfix" => "postfix/smtpd",
        "dovecot" => "dovecot",
        "vsftpd" => "vsftpd",
        "proftpd" => "proftpd",
        _ => "app",
    }
}

#[derive(Debug)]
struct Sample {
    line: String,
    host: Option<String>,
}

fn samples(filter: &str) -> Vec<Sample> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/filters")
        .join(format!("{filter}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let entries: Vec<serde_yaml::Value> = serde_yaml::from_str(&text).unwrap();
    entries
        .into_iter()
        .map(|entry| Sample {
            line: entry["line"].as_str().unwrap().to_string(),
            host: entry["host"].as_str().map(str::to_string),
        })
        .collect()
}

/// A line that carries no envelope, stamp or tag: what a container prints.
fn is_bare(line: &str) -> bool {
    let mut decoder = Decoder::new();
    match decoder.push(line) {
        Some(record) => {
            record.envelope == EnvelopeKind::Plain
                && record.stamp.is_none()
                && record.program.is_none()
                && record.text == line
        }
        None => false,
    }
}

fn wrapped(filter: &str, bare: &str) -> Vec<String> {
    let json = serde_json::json!({
        "log": format!("{bare}\n"),
        "stream": "stderr",
        "time": "2026-11-26T07:00:01.123456789Z",
    });
    vec![
        bare.to_string(),
        format!(
            "Nov 26 07:00:01 testhost {}[4242]: {bare}",
            program_for(filter)
        ),
        json.to_string(),
        format!("2026-11-26T07:00:01.123456789Z stdout F {bare}"),
    ]
}

#[test]
fn regex_json_reports_the_same_hosts_in_every_envelope_for_every_builtin_filter() {
    let mut checked = 0;
    for filter in builtin::names() {
        let mut lines = Vec::new();
        let mut expected: BTreeMap<u64, String> = BTreeMap::new();
        for sample in samples(filter) {
            let variants = if is_bare(&sample.line) {
                wrapped(filter, &sample.line)
            } else {
                vec![sample.line.clone()]
            };
            // A failure of an address that is never a client (the filter reports `0.0.0.0`
            // as Fail2Ban does) is refused by the replay as by the daemon's jails.
            let counted = sample.host.as_ref().filter(|host| {
                host.parse()
                    .is_ok_and(|address| logjail::address::not_a_client(address).is_none())
            });
            for variant in variants {
                lines.push(variant);
                if let Some(host) = counted {
                    expected.insert(lines.len() as u64, host.clone());
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(format!("{filter}.log"));
        let mut file = std::fs::File::create(&log).unwrap();
        for line in &lines {
            writeln!(file, "{line}").unwrap();
        }
        drop(file);

        let output = Command::new(BINARY)
            .args(["regex", "--json"])
            .arg(&log)
            .arg(filter)
            .output()
            .unwrap();
        assert!(output.status.success(), "{filter}: {output:?}");
        let mut found: BTreeMap<u64, String> = BTreeMap::new();
        for json_line in String::from_utf8(output.stdout).unwrap().lines() {
            let object: serde_json::Value = serde_json::from_str(json_line)
                .unwrap_or_else(|e| panic!("{filter}: stdout is not JSON lines: {json_line}: {e}"));
            found.insert(
                object["line"].as_u64().unwrap(),
                object["host"].as_str().unwrap().to_string(),
            );
        }
        for (line_number, host) in &expected {
            assert_eq!(
                found.get(line_number),
                Some(host),
                "{filter}: line {line_number} `{}` should give {host}",
                lines[*line_number as usize - 1]
            );
        }
        for (line_number, host) in &found {
            assert!(
                expected.contains_key(line_number),
                "{filter}: line {line_number} `{}` is not a failure but gave {host}",
                lines[*line_number as usize - 1]
            );
        }
        assert!(!expected.is_empty(), "{filter}: no failure samples");
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} built-in filters checked");
}

#[test]
fn single_line_argument_and_raw_regex() {
    let output = Command::new(BINARY)
        .args([
            "regex",
            "--json",
            "Nov 26 07:00:01 web sshd[1]: Failed password for root from 192.0.2.7 port 22 ssh2",
            "sshd",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let object: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(object["host"], "192.0.2.7");
    assert_eq!(object["line"], 1);
    assert_eq!(object["user"], "root");

    let output = Command::new(BINARY)
        .args([
            "regex",
            "login failed from 2001:db8::9",
            r"^login failed from <HOST>$",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("Lines: 1 lines, 0 ignored, 1 matched, 0 missed"),
        "{text}"
    );
}

#[test]
fn bans_replay_in_log_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    let mut file = std::fs::File::create(&log).unwrap();
    // 198.51.100.1 fails 4 times in 3 minutes; 198.51.100.2 four times over an hour.
    for (minute, host) in [
        (0, "198.51.100.1"),
        (0, "198.51.100.2"),
        (1, "198.51.100.1"),
        (2, "198.51.100.1"),
        (3, "198.51.100.1"),
        (20, "198.51.100.2"),
        (40, "198.51.100.2"),
        (60, "198.51.100.2"),
    ] {
        writeln!(
            file,
            "Nov 26 07:{minute:02}:00 web sshd[1]: Failed password for root from {host} port 22 ssh2"
        )
        .unwrap();
    }
    drop(file);
    let output = Command::new(BINARY)
        .arg("regex")
        .arg(&log)
        .args([
            "sshd",
            "--bans",
            "--json",
            "--maxretry",
            "3",
            "--findtime",
            "10m",
            "--bantime",
            "1h",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let bans: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(bans[0]["host"], "198.51.100.1");
    assert_eq!(bans[0]["line"], 4);
    assert_eq!(bans[0]["failures"], 3);
    assert_eq!(bans[0]["bantime"], 3600);
}

#[test]
fn bad_filter_argument_is_one_clear_error() {
    let output = Command::new(BINARY)
        .args(["regex", "some line", "^broken ( <HOST>"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("logjail: filter \"regex\": failregex[0]:"),
        "{stderr}"
    );
}

#[test]
fn lines_naming_a_non_client_address_are_refused_and_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    let mut file = std::fs::File::create(&log).unwrap();
    for host in [
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "ff02::1",
        "255.255.255.255",
        "198.51.100.7",
    ] {
        writeln!(
            file,
            "Nov 26 07:00:01 web sshd[1]: Failed password for root from {host} port 22 ssh2"
        )
        .unwrap();
    }
    drop(file);
    let out = Command::new(BINARY)
        .args(["regex", "--json"])
        .arg(&log)
        .arg("sshd")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let hosts: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["host"].to_string())
        .collect();
    assert_eq!(hosts, ["\"198.51.100.7\""], "{text}");

    let out = Command::new(BINARY)
        .args(["regex", "-v"])
        .arg(&log)
        .arg("sshd")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("refused  line 1: 0.0.0.0 is the unspecified address"),
        "{text}"
    );
    assert!(
        text.contains("refused  line 4: ff02::1 is a multicast address"),
        "{text}"
    );
    assert!(text.contains("note: 5 matched line(s) name an address that is never a client"));
    assert!(
        text.contains("Lines: 6 lines, 0 ignored, 1 matched, 5 missed"),
        "{text}"
    );
    assert!(!text.contains("more missed lines"), "{text}");
}
