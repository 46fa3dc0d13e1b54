//! `logjail check` as a user runs it: every error at once, exit 64; good files pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_logjail");

/// Writes `yaml` as `name` in `dir` and runs `logjail check -c` on it from `cwd` (the test's
/// own working directory when `None`).
fn check_config(
    dir: &std::path::Path,
    name: &str,
    yaml: &str,
    cwd: Option<&std::path::Path>,
) -> (std::path::PathBuf, std::process::Output) {
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    let mut command = Command::new(BINARY);
    command.arg("check").arg("-c").arg(&path);
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    (path, command.output().unwrap())
}

#[test]
fn every_error_is_listed_and_the_exit_code_says_config() {
    let dir = tempfile::tempdir().unwrap();
    let (path, output) = check_config(
        dir.path(),
        "broken.yaml",
        "jails:\n  sshd:\n    maxretry: -1\n    findtime: 10x\n  web:\n    filter: nope\n    ignoreip: [10.0.0.300/8]\n    bantimee: 1h\n",
        None,
    );
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let shown = path.display().to_string();
    for expected in [
        format!("{shown}:3:15: jail \"sshd\": maxretry:"),
        format!("{shown}:4:15: jail \"sshd\": findtime:"),
        format!("{shown}:6:13: jail \"web\": filter: unknown filter \"nope\""),
        format!("{shown}:7:16: jail \"web\": ignoreip[0]:"),
        format!("{shown}:8:5: jail \"web\": bantimee: unknown key"),
        "logjail: 5 errors in the configuration".to_string(),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
}

#[test]
fn the_examples_pass_and_a_missing_file_is_an_error() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let output = Command::new(BINARY)
                .arg("check")
                .arg("-c")
                .arg(&path)
                .output()
                .unwrap();
            assert!(output.status.success(), "{}: {output:?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 5);
    let output = Command::new(BINARY)
        .args(["check", "-c", "/nonexistent/logjail.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(
        String::from_utf8(output.stderr)
            .unwrap()
            .contains("/nonexistent/logjail.yaml")
    );
}

#[test]
fn regex_bans_takes_a_jail_from_a_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    // examples/sshd.yaml: maxretry 4 within 15 minutes, bantime 2 hours.
    let lines: Vec<String> = (0..4)
        .map(|i| format!("Nov 26 07:0{i}:00 web sshd[1]: Failed password for root from 192.0.2.44 port 22 ssh2"))
        .collect();
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sshd.yaml");
    let output = Command::new(BINARY)
        .arg("regex")
        .arg(&log)
        .args(["sshd", "--bans", "--json", "--jail", "sshd", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let ban: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(ban["host"], "192.0.2.44");
    assert_eq!(ban["failures"], 4);
    assert_eq!(ban["bantime"], 7200);
}

/// A jail on Debian's own sshd.conf (read with common.conf, in aggressive mode) passes, and
/// `check` names the patterns that run on fancy-regex with their file and line.
#[test]
fn a_fail2ban_filter_file_passes_and_its_fallbacks_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (_, output) = check_config(
        dir.path(),
        "logjail.yaml",
        "jails:\n  sshd:\n    filter: {fail2ban: /etc/fail2ban/filter.d/sshd.conf, mode: aggressive}\n    sources:\n      - file: /var/log/auth.log\n",
        None,
    );
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let name = "fail2ban:/etc/fail2ban/filter.d/sshd.conf[mode=aggressive]";
    let fancy = format!("note: filter \"{name}\": /etc/fail2ban/filter.d/sshd.conf:");
    assert!(
        stdout.lines().any(|line| line.starts_with(&fancy)
            && line.contains(": failregex[")
            && line.contains("conditionals: runs on fancy-regex")),
        "{stdout}"
    );
    assert!(
        stdout.contains("OK (1 jails, 1 enabled; 1 filters in use)"),
        "{stdout}"
    );
}

/// A relative `fail2ban:` path is read from the configuration's folder, wherever `check` (or
/// the daemon) is started from; a missing one is an error that names the file looked for.
#[test]
fn a_relative_fail2ban_filter_path_is_read_from_the_configuration_folder() {
    let dir = tempfile::tempdir().unwrap();
    let filters = dir.path().join("filters");
    std::fs::create_dir_all(&filters).unwrap();
    std::fs::write(
        filters.join("myapp.conf"),
        "[Definition]\nfailregex = ^login failed for \\S+ from <HOST>$\n",
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let jail = |file: &str| {
        format!(
            "jails:\n  myapp:\n    filter: {{fail2ban: {file}}}\n    sources:\n      - file: /var/log/myapp.log\n"
        )
    };
    let (_, output) = check_config(
        dir.path(),
        "logjail.yaml",
        &jail("filters/myapp.conf"),
        Some(elsewhere.path()),
    );
    assert!(output.status.success(), "{output:?}");
    let (_, output) = check_config(
        dir.path(),
        "missing.yaml",
        &jail("filters/nope.conf"),
        Some(elsewhere.path()),
    );
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let looked_for = dir.path().join("filters/nope.conf").display().to_string();
    assert!(stderr.contains(&looked_for), "{stderr}");
}
