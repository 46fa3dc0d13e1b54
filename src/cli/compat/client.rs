//! `fail2ban-client`: Fail2Ban's command grammar, sent to logjail's control socket, answered in
//! fail2ban-client's text layout (the `Status for the jail:` tree, `Banned IP list:`, the
//! counts `set JAIL banip` prints, `Sorry but the jail 'X' does not exist`), with its exit codes
//! (0, or 255 on any error).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Local, Utc};

use crate::config::sections::DEFAULT_CONTROL_SOCKET;
use crate::control::client::{ClientError, call};
use crate::control::protocol::{BanView, DaemonStatus, ErrorKind, JailDetail, Request};
use crate::duration::{BanTime, parse_bantime, parse_duration};

/// fail2ban-client's exit code for every error.
const EXIT_ERROR: u8 = 255;

/// What the user typed before the command.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    socket: PathBuf,
    help: bool,
    version: bool,
}

/// Why a command was not carried out.
#[derive(Debug)]
enum Failure {
    /// Nothing answers on the socket.
    Unreachable(ClientError),
    /// The daemon answered with an error.
    Refused {
        kind: Option<ErrorKind>,
        message: String,
    },
    /// The command line is not one fail2ban-client (or logjail) takes.
    Usage(String),
}

/// Runs fail2ban-client's `args` (without the program name).
pub fn main(args: &[String]) -> ExitCode {
    let (options, command) = match parse_options(args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("ERROR   {message}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    if options.help || command.first().is_some_and(|c| c == "help") {
        print!("{}", help());
        return ExitCode::SUCCESS;
    }
    if options.version {
        println!(
            "logjail {} (answering as fail2ban-client)",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    if command.is_empty() {
        eprint!("{}", help());
        return ExitCode::from(EXIT_ERROR);
    }
    let client = Client {
        socket: options.socket.clone(),
    };
    match client.run(&command) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            client.report(&command, failure);
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Splits the options fail2ban-client takes before its command from the command. Options of
/// the Fail2Ban server (config folder, pid file, verbosity) are accepted and have no effect.
fn parse_options(args: &[String]) -> Result<(Options, Vec<String>), String> {
    let mut options = Options {
        socket: std::env::var_os("LOGJAIL_SOCKET")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET)),
        help: false,
        version: false,
    };
    let mut index = 0;
    while index < args.len() {
        let arg = args[index].as_str();
        let takes_value = |name: &str| -> Result<String, String> {
            args.get(index + 1)
                .cloned()
                .ok_or_else(|| format!("option {name} needs a value"))
        };
        match arg {
            "--" => {
                index += 1;
                break;
            }
            "-s" | "--socket" => {
                options.socket = PathBuf::from(takes_value(arg)?);
                index += 2;
            }
            "-c" | "--conf" | "-p" | "--pidfile" | "--pname" | "--loglevel" | "--logtarget"
            | "--syslogsocket" | "--timeout" => {
                takes_value(arg)?;
                index += 2;
            }
            "-h" | "--help" => {
                options.help = true;
                index += 1;
            }
            "-V" | "--version" => {
                options.version = true;
                index += 1;
            }
            "-i" => {
                return Err("interactive mode (-i) is not available; give the command".to_string());
            }
            "-d" | "--dp" | "--dump-pretty" | "-t" | "--test" | "--async" => {
                return Err(format!(
                    "{arg}: logjail checks its configuration with `logjail check`; there is no Fail2Ban configuration to dump or test"
                ));
            }
            flag if flag.starts_with('-') && flag.len() > 1 && !flag.starts_with("--") => {
                if !flag[1..].chars().all(|c| "qvxbf".contains(c)) {
                    return Err(format!("unknown option {flag}"));
                }
                index += 1;
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => break,
        }
    }
    Ok((options, args[index..].to_vec()))
}

struct Client {
    socket: PathBuf,
}

impl Client {
    fn ask(&self, request: Request) -> Result<serde_json::Value, Failure> {
        let response = call(&self.socket, request).map_err(Failure::Unreachable)?;
        if response.ok {
            Ok(response.result.unwrap_or(serde_json::Value::Null))
        } else {
            Err(Failure::Refused {
                kind: response.kind,
                message: response
                    .error
                    .unwrap_or_else(|| "the daemon refused".to_string()),
            })
        }
    }

    fn ask_as<T: serde::de::DeserializeOwned>(&self, request: Request) -> Result<T, Failure> {
        let value = self.ask(request)?;
        serde_json::from_value(value).map_err(|error| Failure::Refused {
            kind: Some(ErrorKind::Internal),
            message: format!("the daemon's answer is not understood: {error}"),
        })
    }

    /// Prints a failure the way fail2ban-client does: the error on standard error, the
    /// sentence scripts look for on standard output.
    fn report(&self, command: &[String], failure: Failure) {
        match failure {
            Failure::Unreachable(error) => {
                eprintln!(
                    "ERROR   Failed to access socket path: {}. Is logjail running? ({error})",
                    self.socket.display()
                );
            }
            Failure::Refused { kind, message } => {
                eprintln!("ERROR   NOK: ({message:?},)");
                let missing_jail = jail_argument(command)
                    .filter(|jail| kind == Some(ErrorKind::NotFound) && !self.jail_exists(jail));
                match missing_jail {
                    Some(jail) => println!("Sorry but the jail '{jail}' does not exist"),
                    None => println!("{message}"),
                }
            }
            Failure::Usage(message) => {
                eprintln!("ERROR   NOK: ({message:?},)");
                println!("{message}");
            }
        }
    }

    /// Whether the daemon has a jail of this name (true when it cannot be asked, so that the
    /// daemon's own message is shown).
    fn jail_exists(&self, jail: &str) -> bool {
        self.ask_as::<DaemonStatus>(Request::Status { jail: None })
            .map(|status| status.jails.iter().any(|j| j.name == jail))
            .unwrap_or(true)
    }

    fn run(&self, command: &[String]) -> Result<String, Failure> {
        let words: Vec<&str> = command.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["ping", ..] => {
                let pong = self.ask(Request::Ping)?;
                Ok(format!("Server replied: {}\n", plain(&pong)))
            }
            ["version"] => Ok(format!("{}\n", plain(&self.ask(Request::Version)?))),
            ["echo", rest @ ..] => Ok(format!("{}\n", rest.join(" "))),
            ["status"] => self.status(),
            ["status", jail, ..] => self.jail_status(jail),
            ["banned"] => self.banned_all(),
            ["banned", ips @ ..] => self.banned_of(ips),
            ["unban", "--all"] => {
                let count = self.change(Request::Unban {
                    jail: None,
                    ip: None,
                    all: true,
                })?;
                Ok(format!("{count}\n"))
            }
            ["unban", ips @ ..] if !ips.is_empty() => {
                let mut count = 0;
                for ip in ips {
                    count += self.unban(None, ip)?;
                }
                Ok(format!("{count}\n"))
            }
            ["reload", ..] | ["restart", ..] => {
                self.ask(Request::Reload)?;
                Ok("OK\n".to_string())
            }
            ["start", ..] => {
                self.ask(Request::Ping)?;
                Err(Failure::Usage(
                    "logjail is already running; it starts its jails from its configuration (edit it and `fail2ban-client reload`)"
                        .to_string(),
                ))
            }
            ["stop", ..] => Err(Failure::Usage(
                "logjail is stopped by its service manager (systemctl stop logjail, docker stop logjail), not through the socket"
                    .to_string(),
            )),
            ["flushlogs"] => Ok(
                "logs: rolled over\n(logjail writes no log file of its own: its log goes to standard error, the journal or `docker logs`; nothing to reopen)\n"
                    .to_string(),
            ),
            ["set", "logtarget", ..] | ["get", "logtarget"] => Ok(logtarget(words[0] == "set")),
            ["set", "loglevel", ..] | ["get", "loglevel"] => Ok(format!(
                "Current logging level is 'INFO'\n{}",
                if words[0] == "set" {
                    "(logjail's level is set in its configuration, `log: {level: …}`, or with LOGJAIL_LOG; unchanged)\n"
                } else {
                    ""
                }
            )),
            ["set", "syslogsocket", ..] | ["get", "syslogsocket"] => Ok(
                "Current syslog socket is:\n`- auto\n(logjail does not write to syslog; unchanged)\n".to_string(),
            ),
            ["set", jail, "banip", ips @ ..] if !ips.is_empty() => self.ban(jail, ips),
            ["set", jail, "unbanip", rest @ ..] if !rest.is_empty() => self.unban_in(jail, rest),
            ["set", jail, key @ ("addignoreip" | "delignoreip"), value] => {
                self.change(Request::Set {
                    jail: jail.to_string(),
                    key: key.to_string(),
                    value: value.to_string(),
                })?;
                self.ignoreip(jail)
            }
            ["set", jail, key @ ("bantime" | "findtime" | "maxretry"), value] => {
                self.change(Request::Set {
                    jail: jail.to_string(),
                    key: key.to_string(),
                    value: value.to_string(),
                })?;
                self.get_setting(jail, key)
            }
            ["get", jail, "ignoreip"] => self.ignoreip(jail),
            ["get", jail, key @ ("bantime" | "findtime" | "maxretry")] => self.get_setting(jail, key),
            ["get", jail, "banip", rest @ ..] => self.banip(jail, rest.first().copied()),
            ["set" | "get", ..] => Err(Failure::Usage(
                "Invalid command (no set/get action in logjail for this)".to_string(),
            )),
            _ => Err(Failure::Usage(format!(
                "Invalid command ({}); see `fail2ban-client -h`",
                command.join(" ")
            ))),
        }
    }

    /// A change (`ban`, `unban`, `set`): how many bans or entries it touched.
    fn change(&self, request: Request) -> Result<u64, Failure> {
        let value = self.ask(request)?;
        Ok(value
            .get("count")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0))
    }

    fn status(&self) -> Result<String, Failure> {
        let status: DaemonStatus = self.ask_as(Request::Status { jail: None })?;
        let names: Vec<&str> = status.jails.iter().map(|j| j.name.as_str()).collect();
        let mut out = String::new();
        let _ = writeln!(out, "Status");
        let _ = writeln!(out, "|- Number of jail:\t{}", status.jails.len());
        let _ = writeln!(out, "`- Jail list:\t{}", names.join(", "));
        Ok(out)
    }

    fn jail_status(&self, jail: &str) -> Result<String, Failure> {
        let detail: JailDetail = self.ask_as(Request::Status {
            jail: Some(jail.to_string()),
        })?;
        let summary = &detail.summary;
        let mut files = Vec::new();
        let mut journal = Vec::new();
        let mut containers = Vec::new();
        for source in &detail.sources {
            if let Some(path) = source.strip_prefix("file ") {
                files.push(path.to_string());
            } else if let Some(rest) = source.strip_prefix("journal") {
                journal.push(rest.trim().trim_start_matches("unit ").to_string());
            } else if let Some(name) = source.strip_prefix("container ") {
                containers.push(name.to_string());
            }
        }
        let mut filter = vec![
            (
                "Currently failed".to_string(),
                summary.currently_failed.to_string(),
            ),
            ("Total failed".to_string(), summary.total_failed.to_string()),
        ];
        if !journal.is_empty() {
            filter.push(("Journal matches".to_string(), journal.join(" + ")));
        }
        if !containers.is_empty() {
            filter.push(("Containers".to_string(), containers.join(", ")));
        }
        if !files.is_empty() || (journal.is_empty() && containers.is_empty()) {
            filter.push(("File list".to_string(), files.join(" ")));
        }
        let actions = vec![
            (
                "Currently banned".to_string(),
                summary.currently_banned.to_string(),
            ),
            ("Total banned".to_string(), summary.total_banned.to_string()),
            ("Banned IP list".to_string(), detail.banned.join(" ")),
        ];
        let mut out = format!("Status for the jail: {}\n", summary.name);
        tree(&mut out, &[("Filter", filter), ("Actions", actions)]);
        Ok(out)
    }

    fn banned_all(&self) -> Result<String, Failure> {
        let status: DaemonStatus = self.ask_as(Request::Status { jail: None })?;
        let bans: Vec<BanView> = self.ask_as(Request::Banned { ip: None })?;
        let entries: Vec<String> = status
            .jails
            .iter()
            .map(|jail| {
                let ips: Vec<String> = bans
                    .iter()
                    .filter(|ban| ban.jail == jail.name)
                    .map(|ban| python_string(&ban.ip))
                    .collect();
                format!("{{{}: [{}]}}", python_string(&jail.name), ips.join(", "))
            })
            .collect();
        Ok(format!("[{}]\n", entries.join(", ")))
    }

    fn banned_of(&self, ips: &[&str]) -> Result<String, Failure> {
        let mut lists = Vec::new();
        for ip in ips {
            let bans: Vec<BanView> = self.ask_as(Request::Banned {
                ip: Some(ip.to_string()),
            })?;
            let jails: Vec<String> = bans.iter().map(|ban| python_string(&ban.jail)).collect();
            lists.push(format!("[{}]", jails.join(", ")));
        }
        Ok(format!("[{}]\n", lists.join(", ")))
    }

    /// The addresses banned in `jail` now.
    fn banned_in(&self, jail: &str) -> Result<BTreeSet<String>, Failure> {
        let value = self.ask(Request::Get {
            jail: jail.to_string(),
            key: "banned".to_string(),
        })?;
        Ok(serde_json::from_value::<Vec<String>>(value)
            .unwrap_or_default()
            .into_iter()
            .collect())
    }

    /// `set JAIL banip IP…`: prints how many were newly banned, as Fail2Ban does.
    fn ban(&self, jail: &str, ips: &[&str]) -> Result<String, Failure> {
        let held = self.banned_in(jail)?;
        let mut count = 0;
        for ip in ips {
            let canonical = crate::address::parse_client(ip)
                .map(|ip| ip.to_string())
                .map_err(|error| Failure::Refused {
                    kind: Some(ErrorKind::Invalid),
                    message: error.to_string(),
                })?;
            if held.contains(&canonical) {
                continue;
            }
            match self.ask(Request::Ban {
                jail: jail.to_string(),
                ip: canonical,
                duration: None,
            }) {
                Ok(_) => count += 1,
                // An ignored address is not banned, and Fail2Ban says so only in its log.
                Err(Failure::Refused {
                    kind: Some(ErrorKind::Refused),
                    message,
                }) => eprintln!("NOTICE  {message}"),
                Err(other) => return Err(other),
            }
        }
        Ok(format!("{count}\n"))
    }

    /// One address in one jail or in all: 0 when it was not banned.
    fn unban(&self, jail: Option<&str>, ip: &str) -> Result<u64, Failure> {
        match self.change(Request::Unban {
            jail: jail.map(str::to_string),
            ip: Some(ip.to_string()),
            all: false,
        }) {
            Ok(count) => Ok(count),
            // Not banned (callers naming a jail have checked that it exists).
            Err(Failure::Refused {
                kind: Some(ErrorKind::NotFound),
                ..
            }) => Ok(0),
            Err(other) => Err(other),
        }
    }

    /// `set JAIL unbanip [--report-absent] IP…`.
    fn unban_in(&self, jail: &str, rest: &[&str]) -> Result<String, Failure> {
        let report_absent = rest.first() == Some(&"--report-absent");
        let ips = if report_absent { &rest[1..] } else { rest };
        // An unknown jail is an error, not "0 unbanned".
        self.banned_in(jail)?;
        let mut count = 0;
        let mut absent = Vec::new();
        for ip in ips {
            match self.unban(Some(jail), ip)? {
                0 => absent.push(python_string(ip)),
                n => count += n,
            }
        }
        if report_absent && !absent.is_empty() {
            return Err(Failure::Usage(format!(
                "not banned: [{}]",
                absent.join(", ")
            )));
        }
        Ok(format!("{count}\n"))
    }

    fn ignoreip(&self, jail: &str) -> Result<String, Failure> {
        let value = self.ask(Request::Get {
            jail: jail.to_string(),
            key: "ignoreip".to_string(),
        })?;
        let mut list: Vec<String> = serde_json::from_value(value).unwrap_or_default();
        // Fail2Ban lists IPv4 networks before IPv6 ones.
        list.sort_by_key(|network| network.contains(':'));
        if list.is_empty() {
            return Ok("No IP address/network is ignored\n".to_string());
        }
        let mut out = String::from("These IP addresses/networks are ignored:\n");
        for (index, network) in list.iter().enumerate() {
            let branch = if index + 1 == list.len() { "`-" } else { "|-" };
            // Fail2Ban shows a single address without /32 or /128.
            let shown = network
                .strip_suffix("/32")
                .filter(|a| !a.contains(':'))
                .or_else(|| network.strip_suffix("/128"))
                .unwrap_or(network);
            let _ = writeln!(out, "{branch} {shown}");
        }
        Ok(out)
    }

    /// bantime and findtime in seconds (-1 for permanent), maxretry as a number.
    fn get_setting(&self, jail: &str, key: &str) -> Result<String, Failure> {
        let value = self.ask(Request::Get {
            jail: jail.to_string(),
            key: key.to_string(),
        })?;
        let text = plain(&value);
        let shown = match key {
            "bantime" => match parse_bantime(&text) {
                Ok(BanTime::Permanent) => "-1".to_string(),
                Ok(BanTime::Finite(d)) => d.as_secs().to_string(),
                Err(_) => text,
            },
            "findtime" => parse_duration(&text).map_or(text, |d| d.as_secs().to_string()),
            _ => text,
        };
        Ok(format!("{shown}\n"))
    }

    /// `get JAIL banip [SEPARATOR|--with-time]`.
    fn banip(&self, jail: &str, separator: Option<&str>) -> Result<String, Failure> {
        // An unknown jail is an error here too.
        self.banned_in(jail)?;
        let bans: Vec<BanView> = self.ask_as(Request::Banned { ip: None })?;
        let mine: Vec<&BanView> = bans.iter().filter(|ban| ban.jail == jail).collect();
        if separator == Some("--with-time") {
            let mut out = String::new();
            for ban in mine {
                let _ = writeln!(out, "{}", with_time(ban));
            }
            return Ok(out);
        }
        let ips: Vec<&str> = mine.iter().map(|ban| ban.ip.as_str()).collect();
        Ok(format!("{}\n", ips.join(separator.unwrap_or(" "))))
    }
}

/// `IP \tSTART + SECONDS = END` in local time, as `get JAIL banip --with-time` prints it.
fn with_time(ban: &BanView) -> String {
    let parse = |text: &str| {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let local = |time: DateTime<Utc>| {
        time.with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let start = parse(&ban.start);
    let start_text = start.map(local).unwrap_or_else(|| ban.start.clone());
    match (start, ban.end.as_deref().and_then(parse)) {
        (Some(start), Some(end)) => format!(
            "{} \t{start_text} + {} = {}",
            ban.ip,
            (end - start).num_seconds(),
            local(end)
        ),
        _ => format!("{} \t{start_text} + -1 = 9999-12-31 23:59:59", ban.ip),
    }
}

/// Fail2Ban's two-level status tree.
fn tree(out: &mut String, groups: &[(&str, Vec<(String, String)>)]) {
    for (group_index, (title, entries)) in groups.iter().enumerate() {
        let last_group = group_index + 1 == groups.len();
        let _ = writeln!(out, "{} {title}", if last_group { "`-" } else { "|-" });
        let indent = if last_group { "   " } else { "|  " };
        for (index, (key, value)) in entries.iter().enumerate() {
            let branch = if index + 1 == entries.len() {
                "`-"
            } else {
                "|-"
            };
            let _ = writeln!(out, "{indent}{branch} {key}:\t{value}");
        }
    }
}

fn logtarget(set: bool) -> String {
    let mut out = String::from("Current logging target is:\n`- STDERR\n");
    if set {
        out.push_str(
            "(logjail logs to standard error: the journal or `docker logs` keep it; it writes no log file, so there is nothing to redirect or rotate)\n",
        );
    }
    out
}

/// The jail a command names, for "Sorry but the jail 'X' does not exist".
fn jail_argument(command: &[String]) -> Option<&str> {
    match command.first().map(String::as_str) {
        Some("status" | "set" | "get" | "reload" | "restart") => command.get(1).map(String::as_str),
        _ => None,
    }
    .filter(|jail| !jail.starts_with('-'))
}

/// A string as Python prints it inside a list (`'sshd'`).
fn python_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn help() -> String {
    format!(
        "Usage: fail2ban-client [OPTIONS] <COMMAND>\n\n\
         logjail {} answering fail2ban-client's commands on its control socket.\n\n\
         Options:\n    \
         -s, --socket <FILE>     logjail's control socket (default {DEFAULT_CONTROL_SOCKET}, or LOGJAIL_SOCKET)\n    \
         -c, -p, -q, -v, -x, -b, -f, --loglevel, --logtarget   accepted, no effect\n    \
         -h, --help              this help\n    \
         -V, --version           the version\n\n\
         Command:\n    \
         ping | version | status [JAIL] | banned [IP ...] | reload [JAIL] | unban IP ... | unban --all\n    \
         set JAIL banip IP ...              get JAIL banip [--with-time]\n    \
         set JAIL unbanip [--report-absent] IP ...\n    \
         set JAIL addignoreip IP            set JAIL delignoreip IP\n    \
         get JAIL ignoreip|bantime|findtime|maxretry\n    \
         set JAIL bantime|findtime|maxretry VALUE   (runtime only, as in Fail2Ban)\n    \
         set logtarget X | flushlogs        answered; logjail logs to standard error\n\n\
         logjail's own commands: `logjail --help`.\n",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn options_before_the_command() {
        let (options, command) = parse_options(&strings(&[
            "-vvv",
            "-c",
            "/etc/fail2ban",
            "-s",
            "/tmp/x.sock",
            "-q",
            "status",
            "sshd",
        ]))
        .unwrap();
        assert_eq!(options.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(command, strings(&["status", "sshd"]));
        let (_, command) = parse_options(&strings(&["unban", "--all"])).unwrap();
        assert_eq!(command, strings(&["unban", "--all"]));
        assert!(parse_options(&strings(&["-z", "status"])).is_err());
        assert!(parse_options(&strings(&["-s"])).is_err());
        assert!(parse_options(&strings(&["-h"])).unwrap().0.help);
    }

    #[test]
    fn the_status_tree_is_fail2bans() {
        let mut out = String::new();
        tree(
            &mut out,
            &[
                (
                    "Filter",
                    vec![
                        ("Currently failed".into(), "0".into()),
                        ("File list".into(), "/var/log/auth.log".into()),
                    ],
                ),
                (
                    "Actions",
                    vec![
                        ("Currently banned".into(), "1".into()),
                        ("Banned IP list".into(), "1.2.3.4".into()),
                    ],
                ),
            ],
        );
        assert_eq!(
            out,
            "|- Filter\n|  |- Currently failed:\t0\n|  `- File list:\t/var/log/auth.log\n`- Actions\n   |- Currently banned:\t1\n   `- Banned IP list:\t1.2.3.4\n"
        );
    }

    #[test]
    fn permanent_bans_end_in_year_9999() {
        let ban = BanView {
            jail: "blacklist".into(),
            ip: "192.0.2.9".into(),
            start: "2026-12-02T07:07:27Z".into(),
            end: None,
            ban_count: 1,
            fleet_member: None,
        };
        assert!(with_time(&ban).ends_with(" + -1 = 9999-12-31 23:59:59"));
        let finite = BanView {
            end: Some("2026-12-02T09:07:27Z".into()),
            ..ban
        };
        assert!(
            with_time(&finite).contains(" + 7200 = "),
            "{}",
            with_time(&finite)
        );
        assert!(with_time(&finite).starts_with("192.0.2.9 \t"));
    }
}
