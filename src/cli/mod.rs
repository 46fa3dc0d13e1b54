//! The commands behind the `logjail` binary: argument parsing and exit codes.

pub mod bans;
pub mod client;
pub mod compat;
pub mod import;
pub mod regex;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LogFormat};
use crate::control::Request;

use crate::filter::builtin;

/// Exit code for a configuration that does not validate (sysexits' EX_CONFIG is 78, but
/// EX_USAGE 64 is what service managers and linkerd use for "fix your input").
pub const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "logjail",
    version,
    about = "Fail2Ban for containers: watch container and host logs, ban attackers in iptables"
)]
struct Cli {
    /// The daemon's control socket (for status, ban, unban, get, set, reload, ping).
    #[arg(
        short = 's',
        long,
        global = true,
        env = "LOGJAIL_SOCKET",
        default_value = crate::config::sections::DEFAULT_CONTROL_SOCKET
    )]
    socket: PathBuf,
    /// Print the daemon's answer as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground (what the container runs).
    Run {
        /// Configuration file; default /etc/logjail/logjail.yaml, or the embedded default
        /// when that does not exist.
        #[arg(short = 'c', long = "config", value_name = "PATH")]
        config: Option<PathBuf>,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        log_json: bool,
    },
    /// Validate a configuration file and list every error in it.
    Check {
        /// Configuration file; default /etc/logjail/logjail.yaml, or the embedded default.
        #[arg(short = 'c', long = "config", value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Jails and their counts, or one jail's failures, sources and bans.
    Status { jail: Option<String> },
    /// Ban an address in a jail (its bantime, or --for).
    Ban {
        jail: String,
        ip: String,
        /// How long, e.g. 1h, 30d, -1 for permanent.
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
    },
    /// Lift a ban: `unban JAIL IP`, `unban IP` (every jail), `unban --all [JAIL]`.
    Unban {
        /// JAIL IP, or IP alone.
        #[arg(num_args = 0..=2)]
        args: Vec<String>,
        /// Lift every ban (of JAIL when given).
        #[arg(long)]
        all: bool,
    },
    /// Bans in force, optionally of one address.
    Banned { ip: Option<String> },
    /// `get JAIL ignoreip|bantime|findtime|maxretry|banned`.
    Get { jail: String, key: String },
    /// `set JAIL addignoreip|delignoreip|bantime|findtime|maxretry VALUE`, and
    /// fail2ban-client's `set JAIL banip IP` / `set JAIL unbanip IP`.
    Set {
        jail: String,
        key: String,
        value: String,
    },
    /// Re-read the configuration without losing bans (also on SIGHUP).
    Reload,
    /// Is the daemon there?
    Ping,
    /// The daemon's version.
    Version,
    /// List the built-in filters, or show one.
    Filters {
        /// Print this filter's YAML definition.
        #[arg(long, value_name = "NAME")]
        show: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Test a filter against a log file or a line, like fail2ban-regex.
    Regex(RegexArgs),
    /// Translate a Fail2Ban configuration (jail.conf, jail.local, jail.d/, fail2ban.conf) into
    /// logjail YAML, with a report of what mapped and what did not.
    #[command(name = "import-fail2ban")]
    ImportFail2ban(import::ImportArgs),
    /// Apply, once, the bans an import found in Fail2Ban's address files (`JAIL ADDRESS` lines).
    #[command(name = "import-bans")]
    ImportBans {
        /// The bans file `import-fail2ban` wrote.
        file: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct RegexArgs {
    /// A log file (plain, syslog, Docker json-file or CRI), `-` for standard input, or one line.
    log: String,
    /// A built-in filter name, a Fail2Ban filter file (PATH.conf[mode=…]), a YAML filter file, or a failregex with <HOST>.
    filter: String,
    /// Also print matched, ignored and missed lines.
    #[arg(short, long)]
    verbose: bool,
    /// Print one JSON object per failure line (`line`, `host`, `time`, …) and nothing else.
    #[arg(long, conflicts_with = "verbose")]
    json: bool,
    /// Replay the log through a jail in the log's own time and list the bans it would make
    /// (with --json: one JSON object per ban instead of per failure).
    #[arg(long)]
    bans: bool,
    /// Failures that trigger a ban (with --bans).
    #[arg(long, requires = "bans", value_name = "N")]
    maxretry: Option<u32>,
    /// Window in which maxretry failures trigger a ban, e.g. 10m (with --bans).
    #[arg(long, requires = "bans", value_name = "DURATION")]
    findtime: Option<String>,
    /// Ban length, e.g. 1h, or -1 for permanent (with --bans).
    #[arg(long, requires = "bans", value_name = "DURATION")]
    bantime: Option<String>,
    /// Take maxretry, findtime, bantime, increments and ignoreip from this jail of the
    /// configuration (with --bans; the flags above still override).
    #[arg(long, requires = "bans", value_name = "NAME")]
    jail: Option<String>,
    /// Configuration file for --jail.
    #[arg(short = 'c', long = "config", requires = "jail", value_name = "PATH")]
    config: Option<PathBuf>,
}

/// Entry point of the binary: as `fail2ban-client` or `fail2ban-regex` (a link to it), the
/// Fail2Ban command of that name; else logjail's own commands.
pub fn main() -> ExitCode {
    if let Some(code) = compat::dispatch() {
        return code;
    }
    let cli = Cli::parse();
    let socket = cli.socket.as_path();
    let json = cli.json;
    let ask = |request| client::run(socket, request, json);
    match cli.command {
        Command::Status { jail } => ask(Request::Status { jail }),
        Command::Ban { jail, ip, duration } => ask(Request::Ban { jail, ip, duration }),
        Command::Unban { args, all } => match unban_request(args, all) {
            Ok(request) => ask(request),
            Err(message) => fail(message),
        },
        Command::Banned { ip } => ask(Request::Banned { ip }),
        Command::Get { jail, key } => ask(Request::Get { jail, key }),
        Command::Set { jail, key, value } => ask(match key.as_str() {
            "banip" => Request::Ban {
                jail,
                ip: value,
                duration: None,
            },
            "unbanip" => Request::Unban {
                jail: Some(jail),
                ip: Some(value),
                all: false,
            },
            _ => Request::Set { jail, key, value },
        }),
        Command::Reload => ask(Request::Reload),
        Command::Ping => ask(Request::Ping),
        Command::Version => ask(Request::Version),
        Command::Run { config, log_json } => run(config, log_json),
        Command::Check { config } => check(config),
        Command::Filters { show, json } => filters(show, json),
        Command::Regex(args) => regex_command(args),
        Command::ImportFail2ban(args) => import::import_fail2ban(args),
        Command::ImportBans { file } => import::import_bans(socket, &file),
    }
}

/// `unban JAIL IP`, `unban IP`, `unban --all [JAIL]`.
fn unban_request(args: Vec<String>, all: bool) -> Result<Request, String> {
    let mut args = args.into_iter();
    match (args.next(), args.next(), all) {
        (Some(jail), Some(ip), false) => Ok(Request::Unban {
            jail: Some(jail),
            ip: Some(ip),
            all: false,
        }),
        (Some(ip), None, false) => Ok(Request::Unban {
            jail: None,
            ip: Some(ip),
            all: false,
        }),
        (jail, None, true) => Ok(Request::Unban {
            jail,
            ip: None,
            all: true,
        }),
        (None, None, false) => Err("unban: give JAIL IP, IP, or --all".to_string()),
        (_, Some(_), true) => Err("unban --all takes at most a jail name".to_string()),
        (None, Some(_), false) => Err("unban: give JAIL IP, IP, or --all".to_string()),
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("logjail: {message}");
    ExitCode::FAILURE
}

fn filters(show: Option<String>, json: bool) -> ExitCode {
    if let Some(name) = show {
        return match builtin::source(&name) {
            Some(source) => {
                print!("{source}");
                ExitCode::SUCCESS
            }
            None => fail(format!(
                "no built-in filter named \"{name}\" (see `logjail filters`)"
            )),
        };
    }
    let listed: Vec<(String, String)> = builtin::names()
        .map(|name| {
            let description = builtin::spec(name)
                .and_then(|spec| spec.description)
                .unwrap_or_default();
            (name.to_string(), description)
        })
        .collect();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = if json {
        let objects: Vec<_> = listed
            .iter()
            .map(
                |(name, description)| serde_json::json!({"name": name, "description": description}),
            )
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(objects))
    } else {
        let width = listed.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        listed
            .iter()
            .try_for_each(|(name, description)| writeln!(out, "{name:<width$}  {description}"))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn regex_command(args: RegexArgs) -> ExitCode {
    let resolved = match regex::resolve_filter(&args.filter) {
        Ok(resolved) => resolved,
        Err(e) => return fail(e),
    };
    let input = regex::LogInput::from_argument(&args.log);
    let mode = if args.json {
        regex::OutputMode::Json
    } else if args.verbose {
        regex::OutputMode::Verbose
    } else {
        regex::OutputMode::Summary
    };
    let mut replay = if args.bans {
        match replay_settings(&args).and_then(|s| bans::Replay::new(s).map_err(|e| e.to_string())) {
            Ok(replay) => Some(replay),
            Err(e) => return fail(e),
        }
    } else {
        None
    };
    // With --bans --json, the JSON lines are the bans, not the failures.
    let failure_mode = if args.bans && args.json {
        regex::OutputMode::Summary
    } else {
        mode
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let result = if args.bans && args.json {
        regex::run(
            &input,
            &resolved,
            failure_mode,
            &mut io::sink(),
            |failure| {
                if let Some(replay) = replay.as_mut() {
                    replay.observe(failure);
                }
            },
        )
    } else {
        regex::run(&input, &resolved, failure_mode, &mut out, |failure| {
            if let Some(replay) = replay.as_mut() {
                replay.observe(failure);
            }
        })
    };
    let written = result.and_then(|_| {
        let text = match &replay {
            Some(replay) if args.json => {
                replay.json_lines().join("\n") + if replay.bans().is_empty() { "" } else { "\n" }
            }
            Some(replay) => replay.report(),
            None => String::new(),
        };
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|source| regex::RegexCommandError::Io {
                path: "standard output".to_string(),
                source,
            })
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// The jail settings of a `--bans` replay: Fail2Ban's defaults, changed by the flags given.
fn replay_settings(args: &RegexArgs) -> Result<crate::jail::JailSettings, String> {
    let mut settings = match &args.jail {
        Some(name) => {
            let config = Config::load_or_default(args.config.as_deref())
                .map_err(|errors| format!("{errors}"))?;
            let jail = config
                .jail(name)
                .ok_or_else(|| format!("no jail named \"{name}\" in {}", config.origin))?;
            // A replay judges the log as it was: this machine's addresses are not special.
            let mut jail = jail.clone();
            jail.ignoreself = false;
            jail.jail_settings(&[]).map_err(|e| e.to_string())?
        }
        None => {
            let mut settings = crate::jail::JailSettings::new("regex");
            settings.ignore = crate::jail::IgnoreList::new(false, Vec::new());
            settings
        }
    };
    if let Some(maxretry) = args.maxretry {
        settings.maxretry = maxretry;
    }
    if let Some(findtime) = &args.findtime {
        settings.findtime =
            crate::duration::parse_duration(findtime).map_err(|e| format!("--findtime: {e}"))?;
    }
    if let Some(bantime) = &args.bantime {
        settings.bantime =
            crate::duration::parse_bantime(bantime).map_err(|e| format!("--bantime: {e}"))?;
    }
    settings.validate().map_err(|e| e.to_string())?;
    Ok(settings)
}

fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    Config::load_or_default(path).map_err(|errors| {
        eprintln!("{errors}");
        eprintln!(
            "logjail: {} error{} in the configuration",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        );
        ExitCode::from(EXIT_CONFIG)
    })
}

fn check(path: Option<PathBuf>) -> ExitCode {
    let config = match load_config(path.as_deref()) {
        Ok(config) => config,
        Err(code) => return code,
    };
    for (name, filter) in &config.filters {
        // Fail2Ban filter files have their notes placed on the file's lines instead.
        if let Some(notes) = config.filter_notes.get(name) {
            for note in notes {
                println!("note: filter \"{name}\": {note}");
            }
            continue;
        }
        for (field, note) in filter.fallbacks() {
            println!("note: filter \"{name}\": {field}: {note}");
        }
    }
    let enabled = config.jails.iter().filter(|j| j.enabled).count();
    println!(
        "{}: OK ({} jails, {enabled} enabled; {} filters in use)",
        config.origin,
        config.jails.len(),
        config.filters.len()
    );
    ExitCode::SUCCESS
}

fn init_tracing(config: &Config, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOGJAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.log.level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        // Escape codes would end up in docker logs and break the recidive filter.
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()));
    if json || config.log.format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(path: Option<PathBuf>, log_json: bool) -> ExitCode {
    let config = match load_config(path.as_deref()) {
        Ok(config) => config,
        Err(code) => return code,
    };
    init_tracing(&config, log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("logjail")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = tokio::spawn(stop_on_signal(shutdown.clone()));
        let stopping = shutdown.clone();
        let daemon = crate::daemon::run(config, shutdown);
        tokio::pin!(daemon);
        let result = tokio::select! {
            result = &mut daemon => result,
            // A stop that hangs (a wedged iptables, a stuck source) must not keep
            // `docker stop` waiting for its SIGKILL: give up after the grace period.
            () = async {
                stopping.cancelled().await;
                tokio::time::sleep(STOP_GRACE).await;
            } => Err(crate::daemon::DaemonError::StopTimeout { grace: STOP_GRACE }),
        };
        signals.abort();
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "logjail failed");
            fail(e)
        }
    }
}

/// How long a stop may take before logjail exits regardless (Docker's default stop timeout
/// is 10 s, after which it sends SIGKILL).
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(8);

/// Cancels `shutdown` on SIGTERM (docker stop, Kubernetes) or SIGINT (Ctrl-C).
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for signals; stop logjail with SIGKILL");
        return;
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
    shutdown.cancel();
}
