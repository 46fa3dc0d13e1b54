//! Which iptables to drive (nft or legacy), and running it and ipset without a shell.
//!
//! Docker's rules live in exactly one of the two iptables backends; rules written with the
//! other still filter packets but are invisible to `iptables` and to Docker (a silent
//! mismatch). So `auto` picks the backend that holds Docker's chains, and only falls back to
//! the system's default `iptables` when Docker has none yet.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use iptables::IPTables;

use super::FirewallError;
use super::names::Family;
use crate::config::FirewallBackend;

/// An iptables backend actually in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Nft,
    Legacy,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        })
    }
}

/// The chosen backend, why, and the programs that speak it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendChoice {
    /// Which backend.
    pub backend: Backend,
    /// Why it was chosen, for the log and `status`.
    pub reason: String,
    /// `iptables` program per family (`iptables-nft`, `ip6tables-legacy`, …).
    pub iptables: [&'static str; 2],
    /// `iptables-restore` program per family.
    pub restore: [&'static str; 2],
}

impl BackendChoice {
    fn for_backend(backend: Backend, reason: String) -> BackendChoice {
        let named = |nft: &'static str, legacy: &'static str, plain: &'static str| {
            let specific = match backend {
                Backend::Nft => nft,
                Backend::Legacy => legacy,
            };
            // Distributions without the alternatives system ship only the plain name.
            if on_path(specific) { specific } else { plain }
        };
        BackendChoice {
            backend,
            reason,
            iptables: [
                named("iptables-nft", "iptables-legacy", "iptables"),
                named("ip6tables-nft", "ip6tables-legacy", "ip6tables"),
            ],
            restore: [
                named(
                    "iptables-nft-restore",
                    "iptables-legacy-restore",
                    "iptables-restore",
                ),
                named(
                    "ip6tables-nft-restore",
                    "ip6tables-legacy-restore",
                    "ip6tables-restore",
                ),
            ],
        }
    }

    pub fn iptables(&self, family: Family) -> &'static str {
        self.iptables[family_index(family)]
    }

    pub fn restore(&self, family: Family) -> &'static str {
        self.restore[family_index(family)]
    }
}

fn family_index(family: Family) -> usize {
    match family {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

/// Whether `program` is a file in one of `PATH`'s directories, as a spawn would find it.
pub(super) fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// Chooses the backend as configured; `auto` looks where Docker's chains are.
pub fn choose(configured: FirewallBackend) -> Result<BackendChoice, FirewallError> {
    match configured {
        FirewallBackend::Nft => Ok(BackendChoice::for_backend(
            Backend::Nft,
            "configured (firewall.backend: nft)".to_string(),
        )),
        FirewallBackend::Legacy => Ok(BackendChoice::for_backend(
            Backend::Legacy,
            "configured (firewall.backend: legacy)".to_string(),
        )),
        FirewallBackend::Auto => detect(),
    }
}

fn detect() -> Result<BackendChoice, FirewallError> {
    if on_path("iptables-nft") && holds_docker_chains("iptables-nft") {
        return Ok(BackendChoice::for_backend(
            Backend::Nft,
            "auto: Docker's chains are in iptables-nft".to_string(),
        ));
    }
    // Listing with iptables-legacy creates its tables, after which every iptables-nft call
    // warns about them until reboot: only ask legacy when its tables already exist.
    if legacy_tables_exist() && on_path("iptables-legacy") && holds_docker_chains("iptables-legacy")
    {
        return Ok(BackendChoice::for_backend(
            Backend::Legacy,
            "auto: Docker's chains are in iptables-legacy".to_string(),
        ));
    }
    let default = system_default()?;
    Ok(BackendChoice::for_backend(
        default,
        format!("auto: no Docker chains found yet; the system's iptables is iptables-{default}"),
    ))
}

fn holds_docker_chains(program: &str) -> bool {
    match run(program, &["-w", "-t", "filter", "-S"], None) {
        Ok(listing) => listing
            .lines()
            .any(|line| line == "-N DOCKER-USER" || line == "-N DOCKER"),
        Err(_) => false,
    }
}

/// Legacy x_tables of this thread's network namespace (`/proc/self` would be the process's).
fn legacy_tables_exist() -> bool {
    legacy_table_exists(Family::V4, "filter")
}

/// Whether the legacy x_tables `table` of one family exists in this thread's network
/// namespace. iptables-legacy makes a table by listing it; asking first keeps a host whose
/// rules never used a table without one.
pub(super) fn legacy_table_exists(family: Family, table: &str) -> bool {
    let names = match family {
        Family::V4 => "/proc/thread-self/net/ip_tables_names",
        Family::V6 => "/proc/thread-self/net/ip6_tables_names",
    };
    std::fs::read_to_string(Path::new(names))
        .map(|names| names.lines().any(|name| name.trim() == table))
        .unwrap_or(false)
}

fn system_default() -> Result<Backend, FirewallError> {
    if on_path("iptables") {
        let version = run("iptables", &["--version"], None)?;
        if version.contains("legacy") {
            return Ok(Backend::Legacy);
        }
        return Ok(Backend::Nft);
    }
    if on_path("iptables-nft") {
        return Ok(Backend::Nft);
    }
    if on_path("iptables-legacy") {
        return Ok(Backend::Legacy);
    }
    Err(FirewallError::Backend(
        "no iptables program found on PATH; install it: apt-get install iptables".to_string(),
    ))
}

/// The `iptables` crate's handle for one family's program. Built by hand because the crate's
/// constructor only knows the plain `iptables`/`ip6tables` names.
pub fn iptables_handle(choice: &BackendChoice, family: Family) -> IPTables {
    IPTables {
        cmd: choice.iptables(family),
        has_check: true,
        has_wait: true,
        is_numeric: true,
    }
}

/// Runs a program with arguments (never through a shell), optionally feeding stdin, and
/// returns stdout; a non-zero exit is an error naming the command and its stderr.
pub fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<String, FirewallError> {
    let output = spawn(program, args, stdin)?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(FirewallError::Command {
            command: describe(program, args),
            status: output.status.code(),
            stderr: clean_stderr(&output.stderr),
        })
    }
}

/// Like [`run`] but hands back the raw output whatever the exit status.
pub fn spawn(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Output, FirewallError> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let spawn_error = |error: std::io::Error| FirewallError::Spawn {
        command: describe(program, args),
        message: error.to_string(),
    };
    let mut child = command.spawn().map_err(spawn_error)?;
    let pipe = child.stdin.take();
    // Input is written from its own thread while the output is read, so a program that
    // answers (or fails) before reading everything can never block us both.
    std::thread::scope(|scope| {
        let writer = match (stdin, pipe) {
            (Some(input), Some(mut pipe)) => Some(scope.spawn(move || pipe.write_all(input))),
            _ => None,
        };
        let output = child.wait_with_output().map_err(spawn_error)?;
        if let Some(writer) = writer {
            // A program that exits early closes its stdin: its stderr says why, so a broken
            // pipe here is not the error to report.
            let _ = writer.join();
        }
        Ok(output)
    })
}

fn describe(program: &str, args: &[&str]) -> String {
    let mut text = program.to_string();
    for arg in args.iter().take(12) {
        text.push(' ');
        text.push_str(arg);
    }
    if args.len() > 12 {
        text.push_str(" …");
    }
    text
}

/// stderr without the legacy-tables warning iptables-nft prints once anything has used
/// iptables-legacy on the host (it is noise, not the error).
pub fn clean_stderr(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|line| !line.starts_with("# Warning: iptables-legacy tables present"))
        .collect::<Vec<_>>()
        .join("; ")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_about_legacy_tables_are_dropped_from_errors() {
        let stderr = b"# Warning: iptables-legacy tables present, use iptables-legacy to see them\niptables: No chain/target/match by that name.\n";
        assert_eq!(
            clean_stderr(stderr),
            "iptables: No chain/target/match by that name."
        );
    }

    #[test]
    fn configured_backends_are_taken_as_given() {
        let choice = choose(FirewallBackend::Legacy).unwrap();
        assert_eq!(choice.backend, Backend::Legacy);
        assert!(choice.iptables(Family::V6).starts_with("ip6tables"));
        assert!(choice.reason.contains("configured"));
    }

    #[test]
    fn failing_commands_name_the_command_and_stderr() {
        let error = run("sh", &["-c", "echo boom >&2; exit 3"], None).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("sh -c") && text.contains("boom") && text.contains('3'),
            "{text}"
        );
        assert_eq!(run("cat", &[], Some(b"in")).unwrap(), "in");
    }
}
