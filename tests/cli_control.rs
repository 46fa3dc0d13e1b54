//! The fail2ban-client habits against a running daemon: the real binary talks to the real
//! control socket of a daemon running in this test, in text and `--json`, errors included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use logjail::config::Config;
use support::TestDaemon;
use support::process::{BINARY, cli_async as cli};

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn config(dir: &Path) -> Config {
    let text = format!(
        r#"
store: {{path: {dir}/state.db}}
control: {{socket: {dir}/logjail.sock}}
docker: {{enabled: false}}
metrics: {{enabled: false}}
jails:
  sshd:
    maxretry: 4
    bantime: 2h
    ignoreip: [10.0.0.0/8]
    sources:
      - file: {dir}/auth.log
  blacklist:
    manual: true
    bantime: 30d
"#,
        dir = dir.display()
    );
    support::config_from_yaml(&text)
}

/// The daemon on [`config`], ready for commands.
async fn start(dir: &Path) -> TestDaemon {
    let daemon = TestDaemon::builder(config(dir)).start();
    daemon.wait_for_socket().await;
    daemon
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = dir.path().join("logjail.sock");
    let daemon = start(dir.path()).await;

    let mode = std::fs::metadata(&socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    let out = cli(&socket, &["ping"]).await;
    assert_eq!(stdout(&out), "pong\n");
    let out = cli(&socket, &["version"]).await;
    assert_eq!(stdout(&out).trim(), env!("CARGO_PKG_VERSION"));

    let out = cli(&socket, &["status"]).await;
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("Jail list:\t\tsshd, blacklist"),
        "{}",
        stdout(&out)
    );

    let out = cli(&socket, &["ban", "blacklist", "192.0.2.99"]).await;
    assert_eq!(stdout(&out), "banned 192.0.2.99 in blacklist for 30d\n");
    let out = cli(&socket, &["set", "sshd", "banip", "2001:db8::5"]).await;
    assert_eq!(stdout(&out), "banned 2001:db8::5 in sshd for 2h\n");
    let out = cli(&socket, &["ban", "sshd", "198.51.100.7", "--for", "90s"]).await;
    assert!(stdout(&out).contains("for 1m30s"));

    let out = cli(&socket, &["status", "sshd"]).await;
    let text = stdout(&out);
    assert!(text.starts_with("Status for the jail: sshd\n"), "{text}");
    assert!(text.contains("Currently banned:\t2"), "{text}");
    assert!(
        text.contains("Banned IP list:\t198.51.100.7 2001:db8::5"),
        "{text}"
    );
    assert!(
        text.contains(&format!("file {}/auth.log", dir.path().display())),
        "{text}"
    );

    let out = cli(&socket, &["--json", "status", "sshd"]).await;
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["currently_banned"], 2);
    assert_eq!(json["banned"][1], "2001:db8::5");

    let out = cli(&socket, &["--json", "banned", "192.0.2.99"]).await;
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["jail"], "blacklist");

    let out = cli(&socket, &["get", "sshd", "ignoreip"]).await;
    assert_eq!(stdout(&out), "10.0.0.0/8\n");
    let out = cli(&socket, &["set", "sshd", "addignoreip", "192.168.0.0/16"]).await;
    assert!(
        stdout(&out).contains("not kept across restarts"),
        "{}",
        stdout(&out)
    );
    let out = cli(&socket, &["--json", "get", "sshd", "ignoreip"]).await;
    assert_eq!(stdout(&out).trim(), r#"["10.0.0.0/8","192.168.0.0/16"]"#);
    let out = cli(&socket, &["set", "sshd", "maxretry", "6"]).await;
    assert!(out.status.success());
    let out = cli(&socket, &["get", "sshd", "maxretry"]).await;
    assert_eq!(stdout(&out), "6\n");
    let out = cli(&socket, &["get", "sshd", "bantime"]).await;
    assert_eq!(stdout(&out), "2h\n");

    let out = cli(&socket, &["set", "sshd", "unbanip", "2001:db8::5"]).await;
    assert_eq!(stdout(&out), "lifted 1 ban\n");
    let out = cli(&socket, &["unban", "198.51.100.7"]).await;
    assert_eq!(stdout(&out), "lifted 1 ban\n");
    let out = cli(&socket, &["--json", "unban", "--all"]).await;
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["count"], 1);
    assert_eq!(json["persistent"], true);

    // Errors: one line, non-zero exit.
    for (args, expected) in [
        (
            vec!["status", "nope"],
            "no jail named \"nope\" (jails: sshd, blacklist)",
        ),
        (
            vec!["ban", "sshd", "300.1.2.3"],
            "`300.1.2.3` is not an IP address",
        ),
        (vec!["ban", "sshd", "10.1.2.3"], "10.1.2.3"),
        (vec!["ban", "sshd", "127.0.0.1"], "127.0.0.1"),
        (
            vec!["unban", "sshd", "192.0.2.1"],
            "192.0.2.1 is not banned in sshd",
        ),
        (vec!["get", "sshd", "colour"], "unknown setting \"colour\""),
        (
            vec!["set", "sshd", "maxretry", "many"],
            "maxretry: `many` is not a whole number",
        ),
        (
            vec!["ban", "sshd", "192.0.2.1", "--for", "soon"],
            "duration:",
        ),
    ] {
        let out = cli(&socket, &args).await;
        assert!(!out.status.success(), "{args:?} should fail");
        let message = stderr(&out);
        assert!(message.starts_with("logjail: "), "{args:?}: {message}");
        assert!(message.contains(expected), "{args:?}: {message}");
        assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
    }
    let out = cli(&socket, &["--json", "status", "nope"]).await;
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["ok"], false);

    daemon.stop().await;
    assert!(!socket.exists(), "the socket is removed on stop");

    let out = cli(&socket, &["status"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("logjail is not running"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("logjail run"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_that_are_never_a_client_are_refused_and_mapped_ones_are_one_host() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("logjail.sock");
    let daemon = start(dir.path()).await;

    for (address, why) in [
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
    ] {
        for args in [
            vec!["ban", "blacklist", address],
            vec!["set", "sshd", "banip", address],
            vec!["unban", "blacklist", address],
        ] {
            let out = cli(&socket, &args).await;
            assert!(!out.status.success(), "{args:?} should fail");
            assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
            let message = stderr(&out);
            assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
            let shown = address.strip_prefix("::ffff:").unwrap_or(address);
            assert!(
                message.starts_with(&format!("logjail: {shown} is not a client address: it is ")),
                "{args:?}: {message}"
            );
            assert!(message.contains(why), "{args:?}: {message}");
        }
    }
    let out = cli(&socket, &["--json", "ban", "blacklist", "0.0.0.0"]).await;
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["ok"], false);
    assert!(json["error"].as_str().unwrap().contains("0.0.0.0"));
    let out = cli(&socket, &["--json", "banned"]).await;
    assert_eq!(stdout(&out).trim(), "[]", "nothing was banned");

    // An IPv4 client seen through a dual-stack socket is the same host as its IPv4 address:
    // one ban, shown in IPv4 form, found and lifted by either spelling.
    let out = cli(&socket, &["ban", "blacklist", "::ffff:203.0.113.5"]).await;
    assert_eq!(stdout(&out), "banned 203.0.113.5 in blacklist for 30d\n");
    let out = cli(&socket, &["ban", "blacklist", "203.0.113.5"]).await;
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(
        message.contains("203.0.113.5 is already banned"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
    let out = cli(&socket, &["get", "blacklist", "banned"]).await;
    assert_eq!(stdout(&out), "203.0.113.5\n");
    let out = cli(&socket, &["--json", "banned", "::ffff:203.0.113.5"]).await;
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json[0]["ip"], "203.0.113.5");
    let out = cli(&socket, &["unban", "::ffff:203.0.113.5"]).await;
    assert_eq!(stdout(&out), "lifted 1 ban\n");
    let out = cli(&socket, &["--json", "get", "blacklist", "banned"]).await;
    assert_eq!(stdout(&out).trim(), "[]");

    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_made_from_the_cli_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("logjail.sock");
    for round in 0..2 {
        let daemon = start(dir.path()).await;
        if round == 0 {
            let out = cli(&socket, &["ban", "blacklist", "203.0.113.66"]).await;
            assert!(out.status.success(), "{}", stderr(&out));
        } else {
            let out = cli(&socket, &["get", "blacklist", "banned"]).await;
            assert_eq!(stdout(&out), "203.0.113.66\n");
        }
        daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_other_than_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("logjail.sock");
    let daemon = start(dir.path()).await;
    // Let "nobody" reach the socket's directory, so that the socket's own mode decides.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = tokio::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BINARY,
            "--socket",
        ])
        .arg(&socket)
        .arg("status")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    daemon.stop().await;
}

/// Every refusal carries its kind for programs (`--json`), next to the message people read,
/// whichever task refused: the jail task, the daemon's reload, the socket server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_their_kind_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = dir.path().join("logjail.sock");
    let daemon = start(dir.path()).await;
    let cases: [(&[&str], &str, &str); 7] = [
        (
            &["status", "nope"],
            "not_found",
            "no jail named \"nope\" (jails: ",
        ),
        (
            &["unban", "192.0.2.4"],
            "not_found",
            "192.0.2.4 is not banned",
        ),
        (&["ban", "blacklist", "0.0.0.0"], "invalid", "0.0.0.0"),
        (
            &["set", "sshd", "maxretry", "many"],
            "invalid",
            "maxretry: `many`",
        ),
        (
            &["set", "sshd", "colour", "red"],
            "invalid",
            "unknown setting \"colour\"",
        ),
        (
            &["ban", "sshd", "10.1.2.3"],
            "refused",
            "not banning 10.1.2.3",
        ),
        // The daemon's configuration was given as text: nothing to read again.
        (&["reload"], "invalid", "was not read from a file"),
    ];
    for (args, kind, message) in cases {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = cli(&socket, &full).await;
        assert!(!out.status.success(), "{args:?} should fail");
        let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(json["ok"], false, "{args:?}: {json}");
        assert_eq!(json["kind"], kind, "{args:?}: {json}");
        assert!(
            json["error"].as_str().unwrap().contains(message),
            "{args:?}: {json}"
        );
    }
    daemon.stop().await;
}
