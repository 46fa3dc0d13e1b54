//! End to end, the way a user meets logjail: `deploy/build-local.sh` builds the image (from
//! this test's binary and the local Debian base, no registry), Debian's `docker-compose`
//! starts `examples/sshd/compose.yaml` (a real OpenSSH container and the logjail sidecar with
//! host networking), and an attacker in its own network namespace guesses passwords.
//!
//! Checked for real: the sidecar bans the attacker in the host's `DOCKER-USER` through its
//! own chain and set, with the iptables flavour that holds Docker's chains (detected from
//! inside the container); the attacker's next connection fails while another client still
//! connects; `logjail status` run with `docker exec` shows the ban; the ban survives
//! `docker-compose restart logjail`; tini, PID 1 of the image, reaps orphans; the unban
//! from the CLI in the container lets the attacker back in; `down` removes every rule.
//!
//! The sidecar changes the host's real firewall (its default chain prefix `logjail`), so this
//! runs in nextest's `firewall-host` group, one at a time with the other tests that do.
//! Its configuration is the example's, plus `docker.require_labels` naming the compose
//! project, so that containers of tests running beside it are none of its business.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod firewall_support;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use firewall_support::{Netns, PrefixGuard, Reach, sh, sh_quiet, try_connect, unique};

const BINARY: &str = env!("CARGO_BIN_EXE_logjail");
const BASE_IMAGE: &str = "logjail-test/debian:bookworm";
/// The example's chain prefix (the default one).
const PREFIX: &str = "logjail";
const CONNECT_WAIT: Duration = Duration::from_millis(1500);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn docker() -> String {
    std::env::var("DOCKER").unwrap_or_else(|_| "/usr/bin/docker".to_string())
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Polls real state until `done` or the deadline; the message names what never happened.
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A bridge on the host with an attacker and a bystander behind it, each in a namespace.
struct Clients {
    bridge: String,
    host_ip: IpAddr,
    attacker_ip: IpAddr,
    attacker: Netns,
    bystander: Netns,
}

impl Clients {
    fn new() -> Clients {
        let routes = sh("ip", &["-4", "route", "show"]);
        let subnet = (0..200)
            .map(|offset| format!("10.232.{}", 20 + (std::process::id() + offset) % 200))
            .find(|subnet| !routes.contains(&format!("{subnet}.")))
            .expect("a free test subnet");
        let bridge = unique("ljebr");
        sh("ip", &["link", "add", &bridge, "type", "bridge"]);
        sh(
            "ip",
            &["addr", "add", &format!("{subnet}.1/24"), "dev", &bridge],
        );
        sh("ip", &["link", "set", &bridge, "up"]);
        let attacker = Netns::new("ljea");
        let bystander = Netns::new("ljeb");
        for (ns, host) in [(&attacker, 2), (&bystander, 3)] {
            let host_end = unique("ljeh");
            let client_end = unique("ljec");
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
        Clients {
            bridge,
            host_ip: format!("{subnet}.1").parse().unwrap(),
            attacker_ip: format!("{subnet}.2").parse().unwrap(),
            attacker,
            bystander,
        }
    }

    fn attacker_reaches(&self, port: u16) -> Reach {
        try_connect(
            &self.attacker,
            SocketAddr::new(self.host_ip, port),
            CONNECT_WAIT,
        )
    }

    fn bystander_reaches(&self, port: u16) -> Reach {
        try_connect(
            &self.bystander,
            SocketAddr::new(self.host_ip, port),
            CONNECT_WAIT,
        )
    }

    /// One real SSH login with a wrong password per attempt, all at once (each costs the
    /// PAM delay of a few seconds).
    fn guess_passwords(&self, port: u16, attempts: usize) {
        let options = [
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "NumberOfPasswordPrompts=1",
            "-o",
            "ConnectTimeout=5",
        ];
        let port = port.to_string();
        let target = format!("demo@{}", self.host_ip);
        let children: Vec<_> = (0..attempts)
            .map(|_| {
                Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &self.attacker.name,
                        "sshpass",
                        "-p",
                        "wrong",
                        "ssh",
                    ])
                    .args(options)
                    .args(["-p", &port, &target, "true"])
                    .output_in_background()
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().unwrap();
            // A wrong password must be refused; a success would mean the demo has a password.
            assert!(!output.status.success(), "a wrong password was accepted");
        }
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        sh_quiet("ip", &["link", "del", &self.bridge]);
    }
}

trait Background {
    fn output_in_background(&mut self) -> std::process::Child;
}

impl Background for Command {
    fn output_in_background(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// The example copied to a scratch folder and run as its own compose project; `down -v` and
/// the images' removal happen on drop, even after a failure.
struct Project {
    dir: tempfile::TempDir,
    name: String,
    env: Vec<(String, String)>,
}

impl Project {
    fn compose(&self, args: &[&str]) -> Output {
        Command::new("docker-compose")
            .current_dir(self.dir.path())
            .args(["--project-name", &self.name, "--file", "compose.yaml"])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("DOCKER_HOST", "unix:///var/run/docker.sock")
            .output()
            .unwrap()
    }

    fn compose_ok(&self, args: &[&str]) -> String {
        let output = self.compose(args);
        assert!(
            output.status.success(),
            "docker-compose {args:?} failed:\n{}",
            text(&output)
        );
        text(&output)
    }

    fn var(&self, key: &str) -> &str {
        &self.env.iter().find(|(k, _)| k == key).unwrap().1
    }

    fn sidecar(&self) -> &str {
        self.var("LOGJAIL_CONTAINER")
    }

    /// `docker exec SIDECAR ARGS…`.
    fn exec(&self, args: &[&str]) -> Output {
        Command::new(docker())
            .args(["exec", self.sidecar()])
            .args(args)
            .output()
            .unwrap()
    }

    fn logjail(&self, args: &[&str]) -> Output {
        let mut full = vec!["logjail"];
        full.extend_from_slice(args);
        self.exec(&full)
    }

    fn logs(&self) -> String {
        let output = Command::new(docker())
            .args(["logs", self.sidecar()])
            .output()
            .unwrap();
        text(&output)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "--volumes", "--timeout", "10"]);
        sh_quiet(
            &docker(),
            &[
                "image",
                "rm",
                "-f",
                self.var("LOGJAIL_IMAGE"),
                self.var("SSHD_IMAGE"),
            ],
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn copy_example(name: &str, to: &Path) {
    for entry in std::fs::read_dir(repo().join("examples").join(name)).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// Which iptables flavour holds Docker's chains on this host: the one logjail must use.
fn dockers_flavour() -> &'static str {
    for flavour in ["nft", "legacy"] {
        let output = Command::new(format!("iptables-{flavour}"))
            .args(["-w", "-S", "DOCKER-USER"])
            .output();
        if output.is_ok_and(|output| output.status.success()) {
            return flavour;
        }
    }
    panic!("neither iptables-nft nor iptables-legacy has DOCKER-USER: is Docker running?");
}

fn set_holds(flavourless_set: &str, address: IpAddr) -> bool {
    Command::new("ipset")
        .args(["test", flavourless_set, &address.to_string()])
        .output()
        .is_ok_and(|output| output.status.success())
}

#[test]
fn the_sshd_example_bans_a_password_guesser_and_survives_a_sidecar_restart() {
    let _guard = PrefixGuard {
        prefix: PREFIX.to_string(),
    };
    let clients = Clients::new();
    let dir = tempfile::tempdir().unwrap();
    copy_example("sshd", dir.path());
    // Compose project names are lower-case letters, digits, `-` and `_`.
    let name = unique("lje2e");
    let mut config = std::fs::read_to_string(dir.path().join("logjail.yaml")).unwrap();
    config.push_str(&format!(
        "\n# Added by the test: only this project's containers.\n\
         docker: {{require_labels: [com.docker.compose.project={name}]}}\n\
         metrics: {{listen: 127.0.0.1:{}}}\n",
        free_port()
    ));
    std::fs::write(dir.path().join("logjail.yaml"), config).unwrap();
    let sshd_port = free_port();
    let project = Project {
        dir,
        name: name.clone(),
        env: vec![
            (
                "LOGJAIL_IMAGE".into(),
                format!("logjail-test/sidecar:{name}"),
            ),
            ("LOGJAIL_CONTAINER".into(), format!("{name}-logjail")),
            (
                "SSHD_IMAGE".into(),
                format!("logjail-test/example-sshd:{name}"),
            ),
            ("SSHD_BASE".into(), BASE_IMAGE.into()),
            ("SSHD_PORT".into(), sshd_port.to_string()),
        ],
    };

    // The image, built the documented offline way from this test's binary.
    let build = Command::new(repo().join("deploy/build-local.sh"))
        .args(["--binary", BINARY, "--base", BASE_IMAGE, "--tag"])
        .arg(project.var("LOGJAIL_IMAGE"))
        .env("DOCKER", docker())
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "image build failed:\n{}",
        text(&build)
    );

    project.compose_ok(&["build", "sshd"]);
    project.compose_ok(&["up", "--detach", "--no-build"]);
    wait_for(
        "the sidecar's control socket",
        Duration::from_secs(30),
        || project.logjail(&["ping"]).status.success(),
    );
    wait_for(
        "sshd to accept connections",
        Duration::from_secs(30),
        || clients.bystander_reaches(sshd_port) == Reach::Connected,
    );
    wait_for(
        "the sidecar to watch the sshd container",
        Duration::from_secs(30),
        || project.logs().contains("watching container"),
    );

    // The iptables flavour was detected from inside the container: Docker's own.
    let status = text(&project.logjail(&["status"]));
    let flavour = dockers_flavour();
    assert!(
        status.contains(&format!("Firewall:\t\t{flavour} (")),
        "expected the {flavour} backend:\n{status}"
    );

    // Attack: three wrong passwords (the example's maxretry).
    clients.guess_passwords(sshd_port, 3);
    let set = format!("{PREFIX}-s-sshd-4");
    wait_for(
        "the ban in the kernel's set",
        Duration::from_secs(30),
        || set_holds(&set, clients.attacker_ip),
    );
    let docker_user = sh(&format!("iptables-{flavour}"), &["-w", "-S", "DOCKER-USER"]);
    let jump = format!("-A DOCKER-USER -j {PREFIX}-docker");
    assert_eq!(docker_user.matches(&jump).count(), 1, "{docker_user}");
    let rules = sh(&format!("iptables-{flavour}"), &["-w", "-S"]);
    assert!(
        rules.contains(&format!("--match-set {set} src")),
        "no rule matches the jail's set:\n{rules}"
    );
    assert_eq!(clients.attacker_reaches(sshd_port), Reach::TimedOut);
    assert_eq!(clients.bystander_reaches(sshd_port), Reach::Connected);

    // The operator's view, from the CLI inside the container.
    let jail_status = text(&project.logjail(&["status", "sshd"]));
    assert!(
        jail_status.contains(&clients.attacker_ip.to_string()),
        "status sshd does not list the attacker:\n{jail_status}"
    );
    let banned_json = text(&project.logjail(&["--json", "banned"]));
    let banned: serde_json::Value = serde_json::from_str(banned_json.trim()).unwrap();
    assert!(
        banned
            .to_string()
            .contains(&clients.attacker_ip.to_string()),
        "{banned}"
    );

    // A restart of the sidecar keeps the ban (SQLite in the named volume).
    project.compose_ok(&["restart", "logjail"]);
    wait_for("the restarted sidecar", Duration::from_secs(30), || {
        project.logjail(&["ping"]).status.success()
    });
    wait_for("the ban back in the set", Duration::from_secs(30), || {
        set_holds(&set, clients.attacker_ip)
    });
    let after_restart = text(&project.logjail(&["get", "sshd", "banned"]));
    assert!(
        after_restart.contains(&clients.attacker_ip.to_string()),
        "{after_restart}"
    );
    let docker_user = sh(&format!("iptables-{flavour}"), &["-w", "-S", "DOCKER-USER"]);
    assert_eq!(docker_user.matches(&jump).count(), 1, "{docker_user}");
    assert_eq!(clients.attacker_reaches(sshd_port), Reach::TimedOut);
    assert_eq!(clients.bystander_reaches(sshd_port), Reach::Connected);

    // PID 1 is tini, and it reaps an orphan (logjail itself would leave a zombie behind).
    let init = text(&project.exec(&["cat", "/proc/1/comm"]));
    assert_eq!(init.trim(), "tini");
    let orphan = text(&project.exec(&["sh", "-c", "sleep 3 >/dev/null 2>&1 & echo $!"]));
    let orphan = orphan.trim().to_string();
    let stat = text(&project.exec(&["cat", &format!("/proc/{orphan}/stat")]));
    let parent = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(parent, "1", "the orphan was not handed to PID 1: {stat}");
    wait_for("PID 1 to reap the orphan", Duration::from_secs(10), || {
        !project
            .exec(&["test", "-e", &format!("/proc/{orphan}")])
            .status
            .success()
    });

    // Unban from the CLI in the container: the attacker is let in again.
    let unban = project.logjail(&["unban", "sshd", &clients.attacker_ip.to_string()]);
    assert!(unban.status.success(), "{}", text(&unban));
    assert!(!set_holds(&set, clients.attacker_ip));
    assert_eq!(clients.attacker_reaches(sshd_port), Reach::Connected);

    // `down` stops the sidecar cleanly: its jump and chains leave the host's firewall.
    project.compose_ok(&["down", "--volumes", "--timeout", "10"]);
    let rules = sh(&format!("iptables-{flavour}"), &["-w", "-S"]);
    assert!(
        !rules.contains(&format!("{PREFIX}-")),
        "rules left after down:\n{rules}"
    );
}
