//! The sidecar image (built the documented offline way) has logjail under Fail2Ban's command
//! names: `docker exec logjail fail2ban-client …` and `fail2ban-regex …` work in it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Output};

use support::sidecar_image::SidecarImage;
use support::{docker_cli, unique_name};

/// `docker run --rm --network none --entrypoint PROGRAM IMAGE ARGS…`: no network, nothing kept.
fn run_in(image: &str, program: &str, args: &[&str]) -> Output {
    Command::new(docker_cli())
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            program,
            image,
        ])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_image_answers_as_fail2ban_client_and_fail2ban_regex() {
    let image = SidecarImage::build(format!("logjail-test/sidecar:{}", unique_name("f2bnames")));

    let line = "Nov 26 07:00:01 host sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2";
    let regex = run_in(&image.tag, "fail2ban-regex", &[line, r"^.*from <HOST>"]);
    let stdout = String::from_utf8_lossy(&regex.stdout);
    assert!(
        regex.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&regex.stderr)
    );
    assert!(
        stdout.contains("Lines: 1 lines, 0 ignored, 1 matched, 0 missed"),
        "{stdout}"
    );
    // The image has no /etc/fail2ban: a stock filter name is logjail's built-in filter.
    let builtin = run_in(&image.tag, "fail2ban-regex", &[line, "sshd"]);
    assert!(builtin.status.success());
    assert!(String::from_utf8_lossy(&builtin.stdout).contains("1 matched"));

    let help = run_in(&image.tag, "fail2ban-client", &["-h"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).starts_with("Usage: fail2ban-client"));
    // No daemon in this container: Fail2Ban's error and exit code.
    let ping = run_in(&image.tag, "fail2ban-client", &["ping"]);
    assert_eq!(ping.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&ping.stderr)
            .contains("Failed to access socket path: /run/logjail/logjail.sock")
    );
}
