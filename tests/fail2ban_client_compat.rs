//! logjail called as `fail2ban-client` (a link to the real binary, as the image installs it)
//! against a real daemon, next to the real fail2ban-client against a private fail2ban-server
//! with the same jails: the same commands give the same text (the status tree, `Currently
//! banned:`, `Banned IP list:`, the counts, the ignore list, "Sorry but the jail …") and the
//! same exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use support::TestDaemon;
use support::fail2ban::{Fail2BanServer, linked, run};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A status tree with its file list replaced (each side reads its own file).
fn without_file_list(text: &str) -> String {
    text.lines()
        .map(|line| match line.split_once("File list:\t") {
            Some((head, _)) => format!("{head}File list:\t<files>"),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lines of `text` in any order (Fail2Ban and logjail order address lists differently).
fn line_set(text: &str) -> BTreeSet<String> {
    text.lines().map(str::to_string).collect()
}

/// Words after `Banned IP list:`, in any order.
fn banned_list(text: &str) -> BTreeSet<String> {
    text.lines()
        .find_map(|line| line.split_once("Banned IP list:\t"))
        .map(|(_, list)| list.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

struct Both {
    fail2ban: Fail2BanServer,
    client: PathBuf,
    socket: String,
}

impl Both {
    /// The same command through both; each side's output.
    async fn ask(&self, args: &[&str]) -> (Output, Output) {
        let real = self.fail2ban.client(args);
        let client = self.client.clone();
        let mut full = vec!["-s".to_string(), self.socket.clone()];
        full.extend(args.iter().map(|a| a.to_string()));
        let ours = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = full.iter().map(String::as_str).collect();
            run(&client, &args)
        })
        .await
        .unwrap();
        (real, ours)
    }

    /// Both answer with the same text and exit code.
    async fn same(&self, args: &[&str]) -> String {
        let (real, ours) = self.ask(args).await;
        assert_eq!(
            stdout(&ours),
            stdout(&real),
            "{args:?}: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        assert_eq!(ours.status.code(), real.status.code(), "{args:?}");
        stdout(&ours)
    }
}

fn fail2ban_jails(dir: &Path) -> String {
    format!(
        "[DEFAULT]\nbantime = 7200\nfindtime = 900\nmaxretry = 4\nbackend = polling\nusedns = no\n\
         ignoreip = 127.0.0.1/8 ::1 192.168.9.0/24\naction = dummy[target={dummy}]\n\n\
         [sshd]\nenabled = true\nfilter = sshd\nlogpath = {log}\n\n\
         [blacklist]\nenabled = true\nfilter = sshd\nlogpath = {log}\nbantime = 2592000\n",
        dummy = dir.join("dummy.txt").display(),
        log = dir.join("f2b-auth.log").display(),
    )
}

fn logjail_jails(dir: &Path) -> String {
    format!(
        "docker: {{enabled: false}}\n\
         defaults: {{bantime: 7200, findtime: 900, maxretry: 4, ignoreip: \"127.0.0.1/8 ::1 192.168.9.0/24\"}}\n\
         jails:\n  sshd:\n    sources: [{{file: {log}}}]\n  blacklist:\n    manual: true\n    bantime: 2592000\n",
        log = dir.join("lj-auth.log").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_like_the_real_fail2ban_client() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f2b-auth.log"), "").unwrap();
    std::fs::write(dir.path().join("lj-auth.log"), "").unwrap();
    let fail2ban = Fail2BanServer::start(dir.path(), &fail2ban_jails(dir.path()));
    // Read from a file, so that `reload` has something to read again.
    let config_file = dir.path().join("logjail.yaml");
    std::fs::write(
        &config_file,
        format!(
            "{}store: {{path: {}}}\ncontrol: {{socket: {}}}\nmetrics: {{enabled: false}}\n",
            logjail_jails(dir.path()),
            dir.path().join("logjail.db").display(),
            dir.path().join("logjail.sock").display()
        ),
    )
    .unwrap();
    let daemon = TestDaemon::start_config(logjail::config::Config::load(&config_file).unwrap());
    daemon.wait_for_socket().await;
    let both = Both {
        fail2ban,
        client: linked(dir.path(), "fail2ban-client"),
        socket: daemon.socket().display().to_string(),
    };

    both.same(&["ping"]).await;
    let (real, ours) = both.ask(&["status"]).await;
    let real_lines: Vec<String> = stdout(&real).lines().map(str::to_string).collect();
    let our_lines: Vec<String> = stdout(&ours).lines().map(str::to_string).collect();
    assert_eq!(our_lines[..2], real_lines[..2]);
    let jails = |line: &str| -> BTreeSet<String> {
        line.trim_start_matches("`- Jail list:\t")
            .split(", ")
            .map(str::to_string)
            .collect()
    };
    assert_eq!(jails(&our_lines[2]), jails(&real_lines[2]), "{our_lines:?}");

    let (real, ours) = both.ask(&["status", "sshd"]).await;
    assert_eq!(
        without_file_list(&stdout(&ours)),
        without_file_list(&stdout(&real))
    );
    assert!(stdout(&ours).contains(&format!(
        "`- File list:\t{}/lj-auth.log",
        dir.path().display()
    )));

    assert_eq!(
        both.same(&["set", "sshd", "banip", "203.0.113.5", "203.0.113.6"])
            .await,
        "2\n"
    );
    assert_eq!(
        both.same(&["set", "sshd", "banip", "203.0.113.5"]).await,
        "0\n"
    );
    let (real, ours) = both.ask(&["status", "sshd"]).await;
    let ours_text = stdout(&ours);
    // What scripts grep for.
    assert!(
        ours_text.contains("   |- Currently banned:\t2\n"),
        "{ours_text}"
    );
    assert!(
        ours_text.contains("   |- Total banned:\t2\n"),
        "{ours_text}"
    );
    assert_eq!(banned_list(&ours_text), banned_list(&stdout(&real)));
    let tree = |text: &str| -> Vec<String> {
        without_file_list(text)
            .lines()
            .filter(|l| !l.contains("Banned IP list:"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(tree(&ours_text), tree(&stdout(&real)));

    let (real, ours) = both.ask(&["get", "sshd", "banip"]).await;
    let words = |o: &Output| {
        stdout(o)
            .split_whitespace()
            .map(str::to_string)
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(words(&ours), words(&real));
    let (real, ours) = both.ask(&["get", "sshd", "banip", "--with-time"]).await;
    let shape = regex::Regex::new(
        r"^203\.0\.113\.[56] \t\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+ 7200 = \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$",
    )
    .unwrap();
    for text in [stdout(&real), stdout(&ours)] {
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.lines().all(|l| shape.is_match(l)), "{text}");
    }

    for key in ["bantime", "findtime", "maxretry"] {
        both.same(&["get", "sshd", key]).await;
    }
    for command in [
        &["get", "sshd", "ignoreip"][..],
        &["set", "sshd", "addignoreip", "10.0.0.0/8"],
        &["set", "sshd", "delignoreip", "10.0.0.0/8"],
    ] {
        let (real, ours) = both.ask(command).await;
        // The same networks, in a tree of the same shape.
        let networks = |text: &str| -> BTreeSet<String> {
            line_set(text)
                .iter()
                .filter_map(|l| l.strip_prefix("|- ").or_else(|| l.strip_prefix("`- ")))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(
            networks(&stdout(&ours)),
            networks(&stdout(&real)),
            "{command:?}"
        );
        for text in [stdout(&ours), stdout(&real)] {
            assert!(
                text.starts_with("These IP addresses/networks are ignored:\n"),
                "{text}"
            );
            assert_eq!(
                text.lines().filter(|l| l.starts_with("`- ")).count(),
                1,
                "{text}"
            );
            assert!(text.lines().last().unwrap().starts_with("`- "), "{text}");
        }
    }

    let (real, ours) = both.ask(&["banned"]).await;
    for text in [stdout(&real), stdout(&ours)] {
        assert!(text.contains("{'blacklist': []}"), "{text}");
        assert!(
            text.contains("{'sshd': ['203.0.113.5', '203.0.113.6']}")
                || text.contains("{'sshd': ['203.0.113.6', '203.0.113.5']}"),
            "{text}"
        );
    }
    assert_eq!(both.same(&["banned", "203.0.113.5"]).await, "[['sshd']]\n");
    assert_eq!(both.same(&["banned", "198.51.100.1"]).await, "[[]]\n");

    assert_eq!(
        both.same(&["set", "sshd", "unbanip", "203.0.113.6"]).await,
        "1\n"
    );
    assert_eq!(
        both.same(&["set", "sshd", "unbanip", "203.0.113.6"]).await,
        "0\n"
    );
    assert_eq!(
        both.same(&["set", "sshd", "unbanip", "--report-absent", "203.0.113.99"])
            .await,
        "not banned: ['203.0.113.99']\n"
    );
    assert_eq!(
        both.same(&["set", "blacklist", "banip", "203.0.113.7"])
            .await,
        "1\n"
    );
    assert_eq!(both.same(&["unban", "203.0.113.7"]).await, "1\n");
    assert_eq!(both.same(&["unban", "203.0.113.99"]).await, "0\n");
    assert_eq!(both.same(&["unban", "--all"]).await, "1\n");

    assert_eq!(
        both.same(&["status", "nope"]).await,
        "Sorry but the jail 'nope' does not exist\n"
    );
    both.same(&["get", "nope", "bantime"]).await;
    both.same(&["set", "nope", "unbanip", "203.0.113.5"]).await;
    both.same(&["set", "nope", "banip", "203.0.113.5"]).await;

    // logrotate's `set logtarget` and `flushlogs` succeed, and say what logjail does instead.
    let (real, ours) = both
        .ask(&[
            "set",
            "logtarget",
            &dir.path().join("x.log").display().to_string(),
        ])
        .await;
    assert!(real.status.success() && ours.status.success());
    assert_eq!(stdout(&ours).lines().next(), stdout(&real).lines().next());
    assert!(
        stdout(&ours).contains("standard error"),
        "{}",
        stdout(&ours)
    );
    let (real, ours) = both.ask(&["flushlogs"]).await;
    assert!(ours.status.success());
    assert_eq!(stdout(&ours).lines().next(), stdout(&real).lines().next());

    assert_eq!(both.same(&["reload"]).await, "OK\n");
    let (_, ours) = both.ask(&["-h"]).await;
    assert!(ours.status.success() && stdout(&ours).starts_with("Usage: fail2ban-client"));
    daemon.stop().await;
}

#[test]
fn no_daemon_is_an_error_with_fail2bans_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let client = linked(dir.path(), "fail2ban-client");
    let socket = dir.path().join("none.sock").display().to_string();
    let output = run(&client, &["-s", &socket, "-q", "ping"]);
    assert_eq!(output.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Failed to access socket path") && stderr.contains(&socket),
        "{stderr}"
    );
    // Options Fail2Ban's client takes and logjail has no use for are accepted.
    let output = run(
        &client,
        &["-c", "/etc/fail2ban", "-vv", "-s", &socket, "status"],
    );
    assert_eq!(output.status.code(), Some(255));
    let output = run(&client, &["--bogus", "status"]);
    assert_eq!(output.status.code(), Some(255));
}
