//! End to end, the way a user meets logjail: `deploy/build-local.sh` builds the image (from
//! this test's binary and the local Debian base, no registry), Debian's `docker-compose`
//! starts an example's `compose.yaml` with the logjail sidecar on host networking, and an
//! attacker in its own network namespace goes at the service.
//!
//! `examples/sshd`: a real OpenSSH container, real password guessing.
//! Checked for real: the sidecar bans the attacker in the host's `DOCKER-USER` through its
//! own chain and set, with the iptables flavour that holds Docker's chains (detected from
//! inside the container); the attacker's next connection fails while another client still
//! connects; `logjail status` run with `docker exec` shows the ban; the ban survives
//! `docker-compose restart logjail`; tini, PID 1 of the image, reaps orphans; the unban
//! from the CLI in the container lets the attacker back in; `down` removes every rule.
//!
//! `examples/wordpress`: the WordPress image cannot be pulled here, so an nginx container
//! whose access log has the same (combined) format stands in for it, answering 200 to POSTs
//! on `/wp-login.php` as WordPress does to a failed login. The example's jail rejects with
//! `tcp-reset`: the attacker must be refused at once on the published port.
//!
//! `examples/labels`: the same stand-in, its jail defined by its labels alone; the ban holds
//! across `docker-compose restart`, `docker kill` + `start` and a re-created sidecar.
//!
//! And the image itself: every program in it runs with the plugins and libraries it loads,
//! and its journalctl reads a journal written on the host.
//!
//! The sidecar changes the host's real firewall (its default chain prefix `logjail`), so this
//! runs in nextest's `firewall-host` group, one at a time with the other tests that do.
//! Its configuration is the example's, plus `docker.require_labels` naming the compose
//! project, so that containers of tests running beside it are none of its business.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod firewall_support;
mod support;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use firewall_support::{
    BridgedClients, Netns, PrefixGuard, Reach, sh, sh_quiet, try_connect, unique,
};
use support::sidecar_image::{BASE_IMAGE, SidecarImage};

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

/// A bridge on the host with an attacker (A) and a bystander (B) behind it, each in a
/// namespace.
struct Clients(BridgedClients);

impl Clients {
    fn new() -> Clients {
        Clients(BridgedClients::new(232))
    }

    fn host_ip(&self) -> IpAddr {
        self.0.host_ip
    }

    fn attacker_ip(&self) -> IpAddr {
        self.0.a_ip
    }

    fn attacker(&self) -> &Netns {
        &self.0.a
    }

    fn bystander(&self) -> &Netns {
        &self.0.b
    }

    fn attacker_reaches(&self, port: u16) -> Reach {
        try_connect(
            self.attacker(),
            SocketAddr::new(self.host_ip(), port),
            CONNECT_WAIT,
        )
    }

    fn bystander_reaches(&self, port: u16) -> Reach {
        try_connect(
            self.bystander(),
            SocketAddr::new(self.host_ip(), port),
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
        let target = format!("demo@{}", self.host_ip());
        let children: Vec<_> = (0..attempts)
            .map(|_| {
                Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &self.attacker().name,
                        "sshpass",
                        "-p",
                        "wrong",
                        "ssh",
                    ])
                    .args(options)
                    .args(["-p", &port, &target, "true"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().unwrap();
            // A wrong password must be refused; a success would mean the demo has a password.
            assert!(!output.status.success(), "a wrong password was accepted");
        }
    }
}

/// The example copied to a scratch folder and run as its own compose project; `down -v` and
/// the images' removal happen on drop, even after a failure.
struct Project {
    dir: tempfile::TempDir,
    name: String,
    env: Vec<(String, String)>,
    /// Dropped after `down`, with the project.
    _sidecar: SidecarImage,
}

impl Project {
    /// Copies `examples/EXAMPLE` to a scratch folder, restricts its sidecar to this project's
    /// containers (and a metrics port of its own), and builds the logjail image for it.
    fn new(example: &str, extra_env: &[(&str, String)]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        copy_example(example, dir.path());
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
        let sidecar = SidecarImage::build(format!("logjail-test/sidecar:{name}"));
        let mut env: Vec<(String, String)> = vec![
            ("LOGJAIL_IMAGE".into(), sidecar.tag.clone()),
            ("LOGJAIL_CONTAINER".into(), format!("{name}-logjail")),
        ];
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.replace("{name}", &name))),
        );
        Project {
            dir,
            name,
            env,
            _sidecar: sidecar,
        }
    }

    /// Images the test built for its services (not the sidecar's), removed at the end.
    fn built_images(&self) -> Vec<&str> {
        self.env
            .iter()
            .filter(|(k, _)| k.ends_with("_IMAGE") && k != "LOGJAIL_IMAGE")
            .map(|(_, v)| v.as_str())
            .collect()
    }

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
        for image in self.built_images() {
            sh_quiet(&docker(), &["image", "rm", "-f", image]);
        }
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

/// Whether the kernel's ipset `set` holds `address` (ipset is the same for nft and legacy).
fn set_holds(set: &str, address: IpAddr) -> bool {
    Command::new("ipset")
        .args(["test", set, &address.to_string()])
        .output()
        .is_ok_and(|output| output.status.success())
}

#[test]
fn the_sshd_example_bans_a_password_guesser_and_survives_a_sidecar_restart() {
    let _guard = PrefixGuard {
        prefix: PREFIX.to_string(),
    };
    let clients = Clients::new();
    let sshd_port = free_port();
    let project = Project::new(
        "sshd",
        &[
            ("SSHD_IMAGE", "logjail-test/example-sshd:{name}".to_string()),
            ("SSHD_BASE", BASE_IMAGE.to_string()),
            ("SSHD_PORT", sshd_port.to_string()),
        ],
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
        || set_holds(&set, clients.attacker_ip()),
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
        jail_status.contains(&clients.attacker_ip().to_string()),
        "status sshd does not list the attacker:\n{jail_status}"
    );
    let banned_json = text(&project.logjail(&["--json", "banned"]));
    let banned: serde_json::Value = serde_json::from_str(banned_json.trim()).unwrap();
    assert!(
        banned
            .to_string()
            .contains(&clients.attacker_ip().to_string()),
        "{banned}"
    );

    // A restart of the sidecar keeps the ban (SQLite in the named volume).
    project.compose_ok(&["restart", "logjail"]);
    wait_for("the restarted sidecar", Duration::from_secs(30), || {
        project.logjail(&["ping"]).status.success()
    });
    wait_for("the ban back in the set", Duration::from_secs(30), || {
        set_holds(&set, clients.attacker_ip())
    });
    let after_restart = text(&project.logjail(&["get", "sshd", "banned"]));
    assert!(
        after_restart.contains(&clients.attacker_ip().to_string()),
        "{after_restart}"
    );
    let docker_user = sh(&format!("iptables-{flavour}"), &["-w", "-S", "DOCKER-USER"]);
    assert_eq!(docker_user.matches(&jump).count(), 1, "{docker_user}");
    assert_eq!(clients.attacker_reaches(sshd_port), Reach::TimedOut);
    assert_eq!(clients.bystander_reaches(sshd_port), Reach::Connected);

    // tini hands signals on: SIGHUP reaches logjail, which reloads (keeping the ban).
    let hup = Command::new(docker())
        .args(["kill", "--signal", "HUP", project.sidecar()])
        .output()
        .unwrap();
    assert!(hup.status.success(), "{}", text(&hup));
    wait_for(
        "the reload that SIGHUP asks for",
        Duration::from_secs(20),
        || project.logs().contains("SIGHUP received: reloading"),
    );
    assert!(set_holds(&set, clients.attacker_ip()));

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
    let unban = project.logjail(&["unban", "sshd", &clients.attacker_ip().to_string()]);
    assert!(unban.status.success(), "{}", text(&unban));
    assert!(!set_holds(&set, clients.attacker_ip()));
    assert_eq!(clients.attacker_reaches(sshd_port), Reach::Connected);

    // `down` stops the sidecar cleanly: its jump and chains leave the host's firewall.
    project.compose_ok(&["down", "--volumes", "--timeout", "10"]);
    let rules = sh(&format!("iptables-{flavour}"), &["-w", "-S"]);
    assert!(
        !rules.contains(&format!("{PREFIX}-")),
        "rules left after down:\n{rules}"
    );
}

/// An nginx image standing in for WordPress: same access log format, on stdout; 200 for a
/// POST to `/wp-login.php`, as WordPress answers a failed login.
fn build_wordpress_stand_in(tag: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {BASE_IMAGE}\n\
             RUN printf 'server {{\\n listen 80;\\n access_log /dev/stdout combined;\\n \
             location = /wp-login.php {{ return 200 \"login failed\\\\n\"; }}\\n \
             location / {{ return 200 \"ok\\\\n\"; }}\\n}}\\n' > /etc/nginx/sites-enabled/default\n\
             CMD [\"nginx\", \"-g\", \"daemon off;\"]\n"
        ),
    )
    .unwrap();
    sh(
        &docker(),
        &["build", "-q", "-t", tag, dir.path().to_str().unwrap()],
    );
}

/// One HTTP request from inside `client`; returns the status line.
fn http(client: &Netns, target: SocketAddr, request: String) -> String {
    client.run(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect_timeout(&target, CONNECT_WAIT).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.lines().next().unwrap_or_default().to_string()
    })
}

/// A WordPress example started with the nginx stand-in as its web service (the database is
/// not needed by the stand-in) and the sidecar, both answering. Dropped in field order: the
/// project goes down before the clients and the prefix guard.
struct WordPressRun {
    project: Project,
    clients: Clients,
    port: u16,
    target: SocketAddr,
    _guard: PrefixGuard,
}

impl WordPressRun {
    fn start(example: &str, service: &str) -> WordPressRun {
        let guard = PrefixGuard {
            prefix: PREFIX.to_string(),
        };
        let clients = Clients::new();
        let port = free_port();
        let project = Project::new(
            example,
            &[
                (
                    "WORDPRESS_IMAGE",
                    "logjail-test/wp-stand-in:{name}".to_string(),
                ),
                ("WORDPRESS_PORT", port.to_string()),
                ("WORDPRESS_DB_PASSWORD", "test-only".to_string()),
            ],
        );
        build_wordpress_stand_in(project.var("WORDPRESS_IMAGE"));
        project.compose_ok(&[
            "up",
            "--detach",
            "--no-build",
            "--no-deps",
            service,
            "logjail",
        ]);
        wait_for(
            "the sidecar's control socket",
            Duration::from_secs(30),
            || project.logjail(&["ping"]).status.success(),
        );
        wait_for(
            "the sidecar to watch the web container",
            Duration::from_secs(30),
            || project.logs().contains("watching container"),
        );
        wait_for("nginx to answer", Duration::from_secs(30), || {
            clients.bystander_reaches(port) == Reach::Connected
        });
        let target = SocketAddr::new(clients.host_ip(), port);
        WordPressRun {
            project,
            clients,
            port,
            target,
            _guard: guard,
        }
    }

    /// `count` failed logins from the attacker, each a real POST answered 200.
    fn fail_logins(&self, count: usize) {
        let login = "log=admin&pwd=guess";
        for _ in 0..count {
            let status = http(
                self.clients.attacker(),
                self.target,
                format!(
                    "POST /wp-login.php HTTP/1.1\r\nHost: blog\r\nContent-Type: \
                     application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{login}",
                    login.len()
                ),
            );
            assert_eq!(status, "HTTP/1.1 200 OK");
        }
    }
}

#[test]
fn the_wordpress_example_refuses_a_login_guesser_at_once() {
    let run = WordPressRun::start("wordpress", "wordpress");
    let (project, clients, port, target) = (&run.project, &run.clients, run.port, run.target);
    // Five failed logins (the example's maxretry), each a real POST answered 200.
    run.fail_logins(5);
    let set = format!("{PREFIX}-s-wordpress-4");
    wait_for(
        "the ban in the kernel's set",
        Duration::from_secs(30),
        || set_holds(&set, clients.attacker_ip()),
    );

    // `reject-with tcp-reset` on a published port: refused at once, not left to time out.
    let refused = clients.attacker_reaches(port);
    assert!(refused.refused_fast(), "the banned client got {refused:?}");
    let page = http(
        clients.bystander(),
        target,
        "GET / HTTP/1.1\r\nHost: blog\r\nConnection: close\r\n\r\n".to_string(),
    );
    assert_eq!(page, "HTTP/1.1 200 OK");
    let status = text(&project.logjail(&["status", "wordpress"]));
    assert!(
        status.contains(&clients.attacker_ip().to_string()),
        "{status}"
    );

    let unban = project.logjail(&["unban", "wordpress", &clients.attacker_ip().to_string()]);
    assert!(unban.status.success(), "{}", text(&unban));
    assert_eq!(clients.attacker_reaches(port), Reach::Connected);
}

/// `examples/labels`: the jail is defined by the web container's labels alone. Its ban must
/// hold across every way the sidecar goes down and comes back.
#[test]
fn the_label_example_keeps_its_ban_across_sidecar_restarts_crashes_and_recreation() {
    let run = WordPressRun::start("labels", "web");
    let (project, clients, port, target) = (&run.project, &run.clients, run.port, run.target);
    let answering = |project: &Project| {
        wait_for(
            "the sidecar's control socket",
            Duration::from_secs(30),
            || project.logjail(&["ping"]).status.success(),
        );
    };
    run.fail_logins(5);
    let set = format!("{PREFIX}-s-wp-4");
    let attacker = clients.attacker_ip();
    let still_banned = |project: &Project, when: &str| {
        wait_for(
            &format!("{when}: the ban in the kernel's set"),
            Duration::from_secs(30),
            || set_holds(&set, attacker),
        );
        let reach = clients.attacker_reaches(port);
        assert!(
            reach.refused_fast(),
            "{when}: the banned client got {reach:?}\n{}",
            project.logs()
        );
        let page = http(
            clients.bystander(),
            target,
            "GET / HTTP/1.1\r\nHost: blog\r\nConnection: close\r\n\r\n".to_string(),
        );
        assert_eq!(page, "HTTP/1.1 200 OK", "{when}: the bystander is served");
        let members = text(&Command::new("ipset").args(["list", &set]).output().unwrap());
        let entries = members
            .lines()
            .skip_while(|line| !line.starts_with("Members:"))
            .skip(1)
            .filter(|line| !line.trim().is_empty())
            .count();
        assert_eq!(entries, 1, "{when}: one entry\n{members}");
        let banned = text(&project.logjail(&["banned"]));
        assert_eq!(banned.lines().count(), 1, "{when}: {banned}");
        assert!(
            banned.starts_with(&format!("wp\t{attacker}\t")),
            "{when}: {banned}"
        );
    };
    still_banned(project, "banned by the labels' jail");

    // A clean restart of the sidecar: its stop takes the rules out, its start puts them back.
    project.compose_ok(&["restart", "logjail"]);
    answering(project);
    still_banned(project, "after `docker-compose restart logjail`");

    // A crash: SIGKILL to the whole container (tini and logjail), then a start.
    sh(&docker(), &["kill", project.sidecar()]);
    sh(&docker(), &["start", project.sidecar()]);
    answering(project);
    still_banned(project, "after `docker kill` and `docker start`");

    // A new sidecar container (an upgrade does this): only the state volume carries over.
    project.compose_ok(&[
        "up",
        "--detach",
        "--no-build",
        "--no-deps",
        "--force-recreate",
        "logjail",
    ]);
    answering(project);
    still_banned(project, "after the sidecar was re-created");
    let status = text(&project.logjail(&["status", "wp"]));
    assert!(
        status.contains("Defined by:\t\tlabels of container"),
        "{status}"
    );

    let unban = project.logjail(&["unban", "wp", &attacker.to_string()]);
    assert!(unban.status.success(), "{}", text(&unban));
    assert_eq!(clients.attacker_reaches(port), Reach::Connected);
}

/// Appends one journal entry, in Journal Export Format, to `DIR/host.journal` as the host's
/// journald would have it on disk (`systemd-journal-remote` writes real journal files).
fn write_host_journal(dir: &Path, message: &str) {
    let micros = chrono::Utc::now().timestamp_micros();
    let export = format!(
        "__REALTIME_TIMESTAMP={micros}\n__MONOTONIC_TIMESTAMP=1000000\n\
         _BOOT_ID=0b5c7dfb2e6a4c1f9d3e8a7b6c5d4e3f\n_HOSTNAME=web\n\
         SYSLOG_IDENTIFIER=sshd\n_SYSTEMD_UNIT=ssh.service\nMESSAGE={message}\n\n"
    );
    let remote = [
        "/lib/systemd/systemd-journal-remote",
        "/usr/lib/systemd/systemd-journal-remote",
    ]
    .into_iter()
    .find(|path| Path::new(path).exists())
    .expect("systemd-journal-remote is installed (scripts/test installs it)");
    let mut child = Command::new(remote)
        .arg(format!("--output={}", dir.join("host.journal").display()))
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), export.as_bytes()).unwrap();
    let done = child.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", text(&done));
}

/// The image holds everything its programs load at run time: the iptables plugins of both
/// flavours and families (conntrack, set, REJECT), ipset, tini, and a journalctl that reads a
/// journal written on the host. A missing shared library or plugin shows here, not on a
/// user's host. (NET_ADMIN only inside the container's own network namespace: iptables-legacy
/// asks the kernel for match revisions even to print help.)
#[test]
fn the_image_runs_its_firewall_tools_and_reads_a_host_journal() {
    let image = SidecarImage::build(format!("logjail-test/sidecar:{}", unique("ljimg")));
    let tag = image.tag.as_str();
    let run = |mounts: &[&str], program: &str, args: &[&str]| -> String {
        let output = Command::new(docker())
            .args(["run", "--rm", "--cap-add", "NET_ADMIN"])
            .args(mounts)
            .args(["--entrypoint", program, tag])
            .args(args)
            .output()
            .unwrap();
        text(&output)
    };
    for (program, args, expected) in [
        (
            "iptables-nft",
            &["-m", "conntrack", "--help"][..],
            "--ctorigdstport",
        ),
        (
            "iptables-legacy",
            &["-m", "conntrack", "--help"],
            "--ctorigdstport",
        ),
        ("ip6tables-nft", &["-m", "set", "--help"], "--match-set"),
        ("ip6tables-legacy", &["-m", "set", "--help"], "--match-set"),
        (
            "iptables-legacy",
            &["-j", "REJECT", "--help"],
            "icmp-port-unreachable",
        ),
        (
            "ip6tables-nft",
            &["-j", "REJECT", "--help"],
            "icmp6-port-unreachable",
        ),
        ("iptables-legacy-save", &["--version"], "legacy"),
        ("ip6tables-nft-restore", &["--version"], "nf_tables"),
        ("ipset", &["--version"], "ipset v"),
        ("tini", &["--version"], "tini version"),
        ("logjail", &["--version"], env!("CARGO_PKG_VERSION")),
    ] {
        let said = run(&[], program, args);
        assert!(
            said.contains(expected),
            "{program} {args:?} in the image said:\n{said}"
        );
    }

    let journal = tempfile::tempdir().unwrap();
    write_host_journal(
        journal.path(),
        "Failed password for root from 192.0.2.44 port 22 ssh2",
    );
    let mount = format!("{}:/host-journal:ro", journal.path().display());
    let read = run(
        &["-v", &mount],
        "journalctl",
        &[
            "--directory",
            "/host-journal",
            "--output",
            "cat",
            "--no-pager",
        ],
    );
    assert!(
        read.contains("Failed password for root from 192.0.2.44 port 22 ssh2"),
        "the image's journalctl did not read the host's journal:\n{read}"
    );
}
