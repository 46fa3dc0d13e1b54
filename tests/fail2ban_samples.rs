//! Agreement of the built-in filters with Fail2Ban's own annotated sample logs.
//!
//! Debian's `fail2ban` package ships, for each of its filters, a sample log where every line
//! is preceded by a `# failJSON: {"match": …, "host": …}` annotation. Each of our filters that
//! has such a file is run over it (through the same envelope decoding and engine as in
//! production) and must agree on match/no-match, host and, where Fail2Ban names one, user.
//! Where we differ on purpose the line is listed below with the reason; the test fails on any
//! difference not listed and on any listed difference that no longer is one, so the list stays
//! true. `tests/fixtures/filters/DIFFERENCES.md` documents the same differences.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use logjail::filter::envelope::{Decoder, Record};
use logjail::filter::{Filter, Verdict, builtin};
use serde_json::{Map, Value};
use support::fail2ban_logs::{
    Expected, LOGS_DIR, Outcome, annotated_address, condition_holds, describe, logs_dir,
};

/// A line where we deliberately disagree with Fail2Ban, found by its exact text.
struct Difference {
    line: &'static str,
    reason: &'static str,
}

/// One of our filters and the Fail2Ban sample file it is checked against.
struct Agreement {
    filter: &'static str,
    /// Fail2Ban option sets (`filterOptions` entries, JSON) that our filter implements. A block
    /// of the sample file is checked when one of its option sets is among these, ignoring the
    /// `test.*` keys and the keys that only describe the log format (`logtype`, `logging`).
    modes: &'static [&'static str],
    differences: &'static [Difference],
}

// Reasons shared by several lines.
const HOSTNAME: &str = "host name, not an address: logjail never resolves names (whoever controls the DNS would choose the ban)";
const MULTILINE: &str = "Fail2Ban takes the address from an earlier line of the same sshd process (multi-line state); the line itself names none";
const HOSTBASED: &str = "hostbased failures end with the client's own user and host names (free text after the address, where a forged \" from ADDR port N ssh2\" could sit), so they are not matched";
const RUSER: &str = "SSH-1 \": ruser NAME\" suffix (protocol 1 was removed in OpenSSH 7.4): free client text after the address, so the line is not matched rather than guessed at";
const MULTILINE_NOFAIL: &str = "Fail2Ban counts the held-back pam_unix failures of this connection when it ends; logjail judges each line alone and never counts a successful login or a clean disconnect";

const AGREEMENTS: &[Agreement] = &[
    Agreement {
        filter: "sshd",
        modes: &[r#"{}"#, r#"{"mode": "normal"}"#],
        differences: &[
            Difference {
                line: "Jun 21 16:47:48 digital-mlhhyiqscv sshd[13709]: error: PAM: Authentication failure for myhlj1374 from 192.030.0.6",
                reason: "192.030.0.6 is not an IPv4 address (leading zero: octal to some parsers, refused by ours)",
            },
            Difference {
                line: "May 29 20:56:52 imago sshd[28732]: error: PAM: Authentication failure for stefanor from example.com",
                reason: HOSTNAME,
            },
            Difference {
                line: "Feb 25 14:34:11 belka sshd[31607]: User root from example.com not allowed because not listed in AllowUsers",
                reason: HOSTNAME,
            },
            Difference {
                line: "Apr 29 17:16:20 Jamess-iMac.local sshd[62312]: error: PAM: authentication error for james from example.com via 192.168.1.201",
                reason: HOSTNAME,
            },
            Difference {
                line: "Mar 26 04:56:27 angel sshd[9739]: User allena from example.com not allowed because not in any group",
                reason: HOSTNAME,
            },
            Difference {
                line: "Feb 25 14:34:11 belka sshd[31603]: Failed password for invalid user ROOT from aaaa:bbbb:cccc:1234::1:1",
                reason: "no \"port N\": every OpenSSH since 3.x writes it, and requiring it keeps a forged \" from ADDR\" at the end of a user name from being read as the address",
            },
            Difference {
                line: "Sep 29 17:15:02 spaceman sshd[12946]: Failed hostbased for dan from 127.0.0.1 port 45785 ssh2: RSA 8c:e3:aa:0f:64:51:02:f7:14:79:89:3f:65:84:7c:30, client user \"dan\", client host \"localhost.localdomain\"",
                reason: HOSTBASED,
            },
            Difference {
                line: "Sep 29 17:15:02 spaceman sshd[12946]: Failed hostbased for dan from 127.0.0.1 port 45785 ssh2: DSA 01:c0:79:41:91:31:9a:7d:95:23:91:ac:b1:6d:59:81, client user \"dan\", client host \"localhost.localdomain\"",
                reason: HOSTBASED,
            },
            Difference {
                line: "Sep 29 17:15:02 spaceman sshd[12946]: Failed password for user from 127.0.0.1 port 20000 ssh1: ruser from 1.2.3.4",
                reason: RUSER,
            },
            Difference {
                line: "Sep 29 17:15:02 spaceman sshd[12946]: Failed password for user from 127.0.0.1 port 20000 ssh1: ruser XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX from 1.2.3.4",
                reason: RUSER,
            },
            Difference {
                line: "Sep 29 17:15:03 spaceman sshd[12947]: Failed password for user from aaaa:bbbb:cccc:1234::1:1 port 20000 ssh1: ruser XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX from 1.2.3.4",
                reason: RUSER,
            },
            Difference {
                line: "Nov 11 08:04:52 redbamboo sshd[2737]: Failed password for invalid user test from 127.0.0.1 port 58946 ssh2: from 10.10.1.2 port 55555 ssh2",
                reason: "OpenSSH never writes \": info\" after a password failure, so this is user \"test from 127.0.0.1 port 58946 ssh2:\" failing from 10.10.1.2 (Fail2Ban assumes a free-text info suffix and takes 127.0.0.1)",
            },
            Difference {
                line: "Apr 24 01:39:19 host sshd[3719]: error: Received disconnect from 198.51.100.34: 11: Bye Bye [preauth]",
                reason: MULTILINE,
            },
            Difference {
                line: "May 27 00:16:33 host sshd[2364]: Received disconnect from 198.51.100.76 port 58846:11: Bye Bye [preauth]",
                reason: MULTILINE,
            },
            Difference {
                line: "Apr 27 13:02:04 host sshd[29116]: Received disconnect from 1.2.3.4: 11: Normal Shutdown, Thank you for playing [preauth]",
                reason: MULTILINE,
            },
            Difference {
                line: "Nov 28 09:16:05 srv sshd[32310]: Disconnecting: Too many authentication failures for git [preauth]",
                reason: MULTILINE,
            },
            Difference {
                line: "Nov 23 21:50:37 sshd[8148]: Connection closed by 61.0.0.1 [preauth]",
                reason: MULTILINE,
            },
            Difference {
                line: "Feb 12 04:09:21 localhost sshd[26713]: Disconnecting: Too many authentication failures for root [preauth]",
                reason: MULTILINE,
            },
            Difference {
                line: "Feb 12 04:09:21 localhost sshd[26713]: Disconnecting: Too many authentication failures [preauth]",
                reason: MULTILINE,
            },
            Difference {
                line: "Mar  7 18:53:23 bar sshd[1558]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser=sudoer rhost=192.0.2.114",
                reason: MULTILINE_NOFAIL,
            },
            Difference {
                line: "Mar  7 18:53:24 bar sshd[1558]: Accepted password for known from 192.0.2.114 port 52100 ssh2",
                reason: MULTILINE_NOFAIL,
            },
            Difference {
                line: "Mar  7 18:53:34 bar sshd[1559]: Accepted password for known from 192.0.2.116 port 52100 ssh2",
                reason: MULTILINE_NOFAIL,
            },
        ],
    },
    Agreement {
        filter: "asterisk",
        modes: &[r#"{}"#],
        differences: &[Difference {
            line: r#"[2015-05-25 07:21:48] SECURITY[6988] res_security_log.c: SecurityEvent="InvalidAccountID",EventTV="2015-05-25T07:21:48.275+0300",Severity="Error",Service="PJSIP",EventVersion="1",AccountID="70000180",SessionID="",LocalAddress="IPV4/UDP/127.0.0.1/5060",RemoteAddress="IPV4/UDP/5.6.7.8/1111"",LocalAddress="IPV4/UDP/1.2.3.4/5060",RemoteAddress="IPV4/UDP/10.250.251.252/5061""#,
            reason: "the caller's SIP Call-ID (SessionID) holds \",LocalAddress=…,RemoteAddress=…\": fields on both sides of the address are the caller's, so a line with a forged field end is skipped rather than guessed at",
        }],
    },
    Agreement {
        filter: "nginx-http-auth",
        modes: &[r#"{}"#, r#"{"mode": "normal"}"#, r#"{"mode": "auth"}"#],
        differences: &[Difference {
            line: r#"2014/04/03 22:20:40 [error] 30708#0: *3 user "test": password mismatch, client: 127.0.0.1, server: test, request: "GET / HTTP/1.1", host: "localhost:8443"": was not found in "/etc/nginx/.htpasswd", client: 192.0.2.2, server: , request: "GET / HTTP/1.1", host: "localhost:8443""#,
            reason: "the user name holds \": password mismatch, client: 127.0.0.1, …\"; nginx writes user name and Referer unescaped on both sides of the address, so a user name that forges the end of its field is skipped rather than guessed at",
        }],
    },
    Agreement {
        filter: "nginx-botsearch",
        modes: &[r#"{}"#],
        differences: &[],
    },
    Agreement {
        filter: "apache-auth",
        modes: &[r#"{}"#, r#"{"mode": "normal"}"#],
        differences: &[],
    },
    Agreement {
        filter: "postfix",
        modes: &[
            r#"{}"#,
            r#"{"mode": "more"}"#,
            r#"{"mode": "normal"}"#,
            r#"{"mode": "auth"}"#,
            r#"{"mode": "extra"}"#,
        ],
        differences: &[],
    },
    Agreement {
        filter: "dovecot",
        modes: &[r#"{}"#, r#"{"mode": "normal"}"#],
        differences: &[],
    },
    Agreement {
        filter: "vsftpd",
        modes: &[r#"{}"#],
        differences: &[],
    },
    Agreement {
        filter: "proftpd",
        modes: &[r#"{}"#],
        differences: &[],
    },
    Agreement {
        filter: "traefik-auth",
        modes: &[r#"{}"#, r#"{"mode": "normal"}"#],
        differences: &[],
    },
    Agreement {
        filter: "recidive",
        modes: &[r#"{}"#],
        differences: &[],
    },
];

/// An annotated line of a sample file, in a block our filter implements.
#[derive(Debug)]
struct Sample {
    line_number: usize,
    line: String,
    expected: Expected,
    /// For `logtype: journal` blocks: the program the journal would name (from Fail2Ban's
    /// `test.prefix-line`); the line is then handed over as journal fields, not decoded.
    journal_program: Option<String>,
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
}

/// Option keys that only describe the log format: our envelope handles formats by itself.
fn is_format_key(key: &str) -> bool {
    key.starts_with("test.") || key == "logtype" || key == "logging"
}

fn filter_options(options: &Map<String, Value>) -> Map<String, Value> {
    options
        .iter()
        .filter(|(key, _)| !is_format_key(key))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The option set of a `filterOptions` block that our filter implements, if any.
fn our_options(
    block: &[Map<String, Value>],
    modes: &[Map<String, Value>],
    sample_name: &str,
) -> Option<Map<String, Value>> {
    block
        .iter()
        .filter(|options| {
            options
                .get("test.condition")
                .and_then(Value::as_str)
                .is_none_or(|condition| condition_holds(condition, sample_name, options))
        })
        .find(|options| modes.contains(&filter_options(options)))
        .cloned()
}

/// Reads a Fail2Ban sample file the way its own test does: a `failJSON` annotation applies to
/// the next line; other non-comment lines must not match; `filterOptions` switch modes.
fn read_samples(sample_name: &str, modes: &[Map<String, Value>]) -> (Vec<Sample>, usize) {
    let path = logs_dir().join(sample_name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let mut samples = Vec::new();
    let mut skipped = 0;
    // Before any filterOptions, Fail2Ban runs the filter with its defaults.
    let mut active: Option<Map<String, Value>> = modes.contains(&Map::new()).then(Map::new);
    let mut index = 0;
    while index < lines.len() {
        let raw = lines[index];
        index += 1;
        let annotation = raw
            .trim_start_matches('#')
            .strip_prefix(' ')
            .unwrap_or(raw.trim_start_matches('#'));
        let mut expected = Expected {
            matched: false,
            host: None,
            user: None,
        };
        let line_number;
        let line;
        if raw.starts_with('#') {
            if let Some(json) = annotation.strip_prefix("filterOptions:") {
                let value: Value = serde_json::from_str(json.trim()).unwrap();
                let block: Vec<Map<String, Value>> = match value {
                    Value::Array(items) => items
                        .into_iter()
                        .map(|v| v.as_object().unwrap().clone())
                        .collect(),
                    Value::Object(options) => vec![options],
                    other => panic!("{sample_name}: odd filterOptions {other}"),
                };
                active = our_options(&block, modes, sample_name);
                continue;
            }
            if annotation.starts_with("fileOptions:") {
                panic!("{sample_name}: fileOptions are not supported by this test");
            }
            if annotation.starts_with("addFILE:") {
                // Only sshd has one (sshd-journal: the same messages as journal entries with a
                // hostname before the tag); logjail's journal source passes fields, not text.
                continue;
            }
            let Some(json) = annotation.strip_prefix("failJSON:") else {
                continue;
            };
            let value: Value = serde_json::from_str(json.trim())
                .unwrap_or_else(|e| panic!("{sample_name}:{index}: {e}"));
            expected.matched = value["match"].as_bool().unwrap_or(false);
            expected.host = value.get("host").and_then(Value::as_str).map(String::from);
            expected.user = value.get("user").and_then(Value::as_str).map(String::from);
            let constraint = value
                .get("constraint")
                .and_then(Value::as_str)
                .map(String::from);
            line_number = index + 1;
            line = lines.get(index).copied().unwrap_or("");
            index += 1;
            let Some(options) = &active else {
                skipped += 1;
                continue;
            };
            if let Some(constraint) = constraint
                && !condition_holds(&constraint, sample_name, options)
            {
                continue;
            }
        } else if raw.trim().is_empty() {
            continue;
        } else {
            line_number = index;
            line = raw;
            if active.is_none() {
                skipped += 1;
                continue;
            }
        }
        let options = active.as_ref().unwrap();
        let journal_program = (options.get("logtype").and_then(Value::as_str) == Some("journal"))
            .then(|| {
                let prefix = options
                    .get("test.prefix-line")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("{sample_name}: journal block without prefix"));
                // "server asterisk[123]: " → asterisk
                let tag = prefix.split_whitespace().nth(1).unwrap();
                tag.split('[').next().unwrap().to_string()
            });
        samples.push(Sample {
            line_number,
            line: line.trim_end_matches(['\r', '\n']).to_string(),
            expected,
            journal_program,
        });
    }
    (samples, skipped)
}

fn run(filter: &Filter, sample: &Sample) -> Outcome {
    let mut decoder = Decoder::new();
    let verdict = match &sample.journal_program {
        Some(program) => {
            let record = Record::from_parts(&sample.line, None, Some(program), now());
            filter.evaluate_at(&record, now())
        }
        None => {
            let record = decoder
                .push_at(&sample.line, now())
                .expect("a sample line is a complete line");
            filter.evaluate_at(&record, now())
        }
    };
    match verdict {
        Verdict::Failure(failure) => Outcome {
            host: Some(failure.host),
            user: failure.user,
            refused: None,
        },
        Verdict::Ignored { .. } | Verdict::NotAClient { .. } | Verdict::Missed => Outcome {
            host: None,
            user: None,
            refused: None,
        },
    }
}

fn agrees(expected: &Expected, outcome: &Outcome) -> bool {
    match (expected.matched, outcome.host) {
        (false, None) => true,
        (true, Some(host)) => {
            let host_agrees = expected.host.as_deref().and_then(annotated_address) == Some(host);
            let user_agrees = match (&expected.user, &outcome.user) {
                (Some(wanted), Some(got)) => wanted == got,
                _ => true,
            };
            host_agrees && user_agrees
        }
        _ => false,
    }
}

#[test]
fn builtin_filters_agree_with_fail2ban_samples() {
    let mut problems = Vec::new();
    let mut summary = Vec::new();
    for agreement in AGREEMENTS {
        let spec = builtin::spec(agreement.filter)
            .unwrap_or_else(|| panic!("no built-in filter {}", agreement.filter));
        let filter = Filter::compile(agreement.filter, &spec).unwrap();
        let modes: Vec<Map<String, Value>> = agreement
            .modes
            .iter()
            .map(|m| serde_json::from_str(m).unwrap())
            .collect();
        let (samples, skipped) = read_samples(agreement.filter, &modes);
        assert!(!samples.is_empty(), "{}: no samples read", agreement.filter);
        let mut agreed = 0;
        let mut listed_seen: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for sample in &samples {
            let outcome = run(&filter, sample);
            let agree = agrees(&sample.expected, &outcome);
            let listed = agreement.differences.iter().find(|d| d.line == sample.line);
            match (agree, listed) {
                (true, None) => agreed += 1,
                (true, Some(difference)) => {
                    listed_seen.entry(difference.line).or_default().0 += 1;
                }
                (false, Some(difference)) => {
                    listed_seen.entry(difference.line).or_default().1 += 1;
                }
                (false, None) => problems.push(format!(
                    "{}: {}:{}: unlisted difference ({})\n    {}",
                    agreement.filter,
                    agreement.filter,
                    sample.line_number,
                    describe(&sample.expected, &outcome),
                    sample.line
                )),
            }
        }
        for difference in agreement.differences {
            match listed_seen.get(difference.line) {
                Some((0, _)) => {}
                Some((agreeing, _)) => problems.push(format!(
                    "{}: listed difference now agrees on {agreeing} line(s), remove it from the list: {}",
                    agreement.filter, difference.line
                )),
                None => problems.push(format!(
                    "{}: listed difference not found among the checked lines: {}",
                    agreement.filter, difference.line
                )),
            }
        }
        summary.push(format!(
            "{:<16} {:>4} lines checked: {:>4} agree, {:>3} listed differences; {:>3} lines in modes we do not implement",
            agreement.filter,
            samples.len(),
            agreed,
            agreement.differences.len(),
            skipped
        ));
    }
    println!("Fail2Ban sample agreement ({LOGS_DIR}):");
    for line in &summary {
        println!("  {line}");
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_listed_difference_has_a_reason_and_every_sample_file_is_used() {
    for agreement in AGREEMENTS {
        assert!(
            builtin::names().any(|n| n == agreement.filter),
            "{} is not a built-in filter",
            agreement.filter
        );
        for difference in agreement.differences {
            assert!(!difference.reason.trim().is_empty(), "{}", difference.line);
        }
    }
    // A built-in filter that Fail2Ban has samples for must be checked against them.
    for name in builtin::names() {
        if logs_dir().join(name).is_file() {
            assert!(
                AGREEMENTS.iter().any(|a| a.filter == name),
                "{name} has Fail2Ban samples but no agreement entry"
            );
        }
    }
}
