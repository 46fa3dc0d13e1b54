//! logjail called as `fail2ban-regex` (a link to the real binary) next to the real
//! fail2ban-regex on Fail2Ban's own sample logs: with a failregex given on the command line
//! both print the same `Results`: the same `Failregex: N total` and hits, `Ignoreregex`, syslog
//! date template hits, `Lines: N lines, N ignored, N matched, N missed`, and the same matched,
//! ignored and missed lines. A stock filter name runs logjail's built-in filter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::fail2ban::{debian_tree, linked, run};

/// Fail2Ban's sample sshd log (Debian's fail2ban package ships it).
const SSHD_SAMPLES: &str = "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs/sshd";

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn real(args: &[&str]) -> Output {
    Command::new("fail2ban-regex")
        .args(args)
        .output()
        .expect("fail2ban-regex runs (Debian's fail2ban package)")
}

/// From `Results` on, without the time taken and with only the first line of each date
/// template block (Fail2Ban has several ISO 8601 templates where logjail has one).
fn results(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_dates = false;
    let mut seen_template = false;
    for line in text.lines().skip_while(|l| *l != "Results") {
        if line.starts_with("[processed in") {
            continue;
        }
        if line == "Date template hits:" {
            in_dates = true;
            seen_template = false;
        } else if in_dates && line.starts_with("|  [") {
            if seen_template {
                continue;
            }
            seen_template = true;
        } else if line == "`-" {
            in_dates = false;
        }
        out.push(line.to_string());
    }
    out
}

#[test]
fn a_failregex_gives_the_same_results_as_fail2ban_regex() {
    assert!(
        Path::new(SSHD_SAMPLES).is_file(),
        "install Debian's fail2ban package (scripts/test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let ours = linked(dir.path(), "fail2ban-regex");
    let failregex = r"^.*Failed \S+ for .* from <HOST>";
    for extra in [&[][..], &["invalid user"], &[r"port \d+ ssh2"]] {
        let mut args = vec![
            "--print-all-matched",
            "--print-all-missed",
            "--print-all-ignored",
            SSHD_SAMPLES,
            failregex,
        ];
        args.extend_from_slice(extra);
        let expected = real(&args);
        let got = run(&ours, &args);
        assert!(
            got.status.success(),
            "{}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert_eq!(
            results(&stdout(&got)),
            results(&stdout(&expected)),
            "{args:?}\n{}",
            stdout(&got)
        );
        // The header says what was read, in Fail2Ban's words.
        let head = stdout(&got);
        assert!(
            head.starts_with("\nRunning tests\n=============\n\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("Use   failregex line : {failregex}\n")),
            "{head}"
        );
        assert!(
            head.contains(&format!("Use         log file : {SSHD_SAMPLES}\n")),
            "{head}"
        );
    }

    // The default printing: a few missed lines are shown, many are counted.
    let args = [SSHD_SAMPLES, failregex];
    let got = stdout(&run(&ours, &args));
    assert_eq!(results(&got), results(&stdout(&real(&args))));
    assert!(
        got.contains(
            "Missed line(s): too many to print.  Use --print-all-missed to print all 119 lines"
        ),
        "{got}"
    );

    // One line given on the command line.
    let line = "Nov 26 07:00:01 host sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2";
    let args = ["-v", line, failregex];
    let got = stdout(&run(&ours, &args));
    let expected = stdout(&real(&args));
    assert!(
        got.contains(&format!("Use      single line : {line}\n")),
        "{got}"
    );
    assert!(got.contains("|      192.0.2.1  "), "{got}");
    let lines = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("Lines: "))
            .map(str::to_string)
    };
    assert_eq!(lines(&got), lines(&expected));
    assert_eq!(
        lines(&got).as_deref(),
        Some("Lines: 1 lines, 0 ignored, 1 matched, 0 missed")
    );
}

#[test]
fn a_stock_filter_name_runs_the_builtin_filter() {
    let dir = tempfile::tempdir().unwrap();
    let tree = debian_tree(dir.path(), "debian-local");
    let ours = linked(dir.path(), "fail2ban-regex");
    let config = tree.display().to_string();
    for filter in ["sshd", "sshd[mode=normal]"] {
        let got = run(&ours, &["-c", &config, SSHD_SAMPLES, filter]);
        assert!(got.status.success(), "{}", stdout(&got));
        let text = stdout(&got);
        assert!(
            text.contains(&format!(
                "Use   failregex filter file : sshd, basedir: {config}\n"
            )),
            "{text}"
        );
        let expected = stdout(&real(&["-c", &config, SSHD_SAMPLES, filter]));
        // Every line read, as Fail2Ban counts them (comments and blank lines left out); how
        // many match differs where logjail's sshd filter judges differently
        // (tests/fixtures/filters/DIFFERENCES.md).
        let total = |text: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix("Lines: "))
                .and_then(|l| l.split(' ').next())
                .map(str::to_string)
        };
        assert_eq!(total(&text), total(&expected), "{text}");
        assert!(
            text.contains("\nFailregex: ") && text.contains("\nDate template hits:\n"),
            "{text}"
        );
    }
    // A mode the built-in filter does not stand for runs the Fail2Ban filter file itself.
    let got = run(
        &ours,
        &["-c", &config, SSHD_SAMPLES, "sshd[mode=aggressive]"],
    );
    assert!(got.status.success(), "{}", stdout(&got));
    assert!(stdout(&got).contains("\nLines: "), "{}", stdout(&got));
}

#[test]
fn usage_errors_use_fail2bans_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let ours = linked(dir.path(), "fail2ban-regex");
    assert_eq!(run(&ours, &["only-a-log"]).status.code(), Some(255));
    assert_eq!(
        run(&ours, &["--no-such-option", "a", "b"]).status.code(),
        Some(255)
    );
    let help = run(&ours, &["-h"]);
    assert!(help.status.success());
    assert!(
        stdout(&help).starts_with("Usage: fail2ban-regex [OPTIONS] <LOG> <REGEX> [IGNOREREGEX]")
    );
}
