//! `logjail import-fail2ban` (write the YAML, the report and the bans file of an import) and
//! `logjail import-bans` (apply a bans file once through the running daemon).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::control::client::call;
use crate::control::protocol::Request;
use crate::importer::{self, ImportOptions};

use super::EXIT_CONFIG;

/// What `import-fail2ban` was asked.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The Fail2Ban configuration folder.
    #[arg(default_value = importer::DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Write the YAML here instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Write the report here instead of standard error.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write the bans found in address files (ip.blacklist) here; default: next to --output,
    /// with the extension `.bans`.
    #[arg(long, value_name = "FILE")]
    pub bans: Option<PathBuf>,
    /// Keep every jail on its Fail2Ban filter file, even where a built-in filter stands for
    /// Debian's unchanged one.
    #[arg(long)]
    pub fail2ban_filters: bool,
}

/// `logjail import-fail2ban`: exit 0 when the YAML passes `logjail check`, 64 when it was
/// written but does not pass (the report lists why), 1 when nothing could be imported.
pub fn import_fail2ban(args: ImportArgs) -> ExitCode {
    let options = ImportOptions {
        dir: args.dir.clone(),
        fail2ban_filters: args.fail2ban_filters,
    };
    let mut import = match importer::import(&options) {
        Ok(import) => import,
        Err(error) => {
            eprintln!("logjail: import-fail2ban: {error}");
            return ExitCode::FAILURE;
        }
    };
    let bans_path = args
        .bans
        .clone()
        .or_else(|| args.output.as_ref().map(|o| o.with_extension("bans")));
    if !import.bans.is_empty() {
        match &bans_path {
            Some(path) => {
                if let Err(error) = std::fs::write(path, importer::bans::write(&import.bans)) {
                    eprintln!("logjail: import-fail2ban: {}: {error}", path.display());
                    return ExitCode::FAILURE;
                }
                import.report.summary.push(format!(
                    "Wrote {} ban{} to {}: once logjail runs this configuration, apply them with `logjail import-bans {}`",
                    import.bans.len(),
                    if import.bans.len() == 1 { "" } else { "s" },
                    path.display(),
                    path.display()
                ));
            }
            None => import.report.summary.push(format!(
                "{} ban{} found in address files were not written: give --bans FILE (or -o FILE)",
                import.bans.len(),
                if import.bans.len() == 1 { "" } else { "s" }
            )),
        }
    }
    let written = match &args.output {
        Some(path) => {
            std::fs::write(path, &import.yaml).map_err(|e| format!("{}: {e}", path.display()))
        }
        None => std::io::stdout()
            .write_all(import.yaml.as_bytes())
            .map_err(|e| format!("standard output: {e}")),
    };
    if let Err(error) = written {
        eprintln!("logjail: import-fail2ban: {error}");
        return ExitCode::FAILURE;
    }
    let mut text = import.report.to_string();
    if !import.check_errors.is_empty() {
        let _ = writeln!(text, "\n`logjail check` on the generated configuration:");
        for line in &import.check_errors {
            let _ = writeln!(text, "  {line}");
        }
    }
    let reported = match &args.report {
        Some(path) => std::fs::write(path, &text).map_err(|e| format!("{}: {e}", path.display())),
        None => std::io::stderr()
            .write_all(text.as_bytes())
            .map_err(|e| format!("standard error: {e}")),
    };
    if let Err(error) = reported {
        eprintln!("logjail: import-fail2ban: {error}");
        return ExitCode::FAILURE;
    }
    if import.check_errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CONFIG)
    }
}

/// `logjail import-bans FILE`: bans each `JAIL ADDRESS` of the file through the daemon, once:
/// an address already banned in its jail is left alone, so running it again changes nothing.
pub fn import_bans(socket: &Path, file: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("logjail: import-bans: {}: {error}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let bans = match importer::bans::parse(&text) {
        Ok(bans) => bans,
        Err(errors) => {
            for error in errors {
                eprintln!("logjail: import-bans: {}: {error}", file.display());
            }
            return ExitCode::FAILURE;
        }
    };
    // What each jail holds now, asked once per jail.
    let mut held: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
    let (mut banned, mut already, mut refused) = (0u64, 0u64, 0u64);
    for (jail, ip) in bans {
        if !held.contains_key(&jail) {
            let current = match call(
                socket,
                Request::Get {
                    jail: jail.clone(),
                    key: "banned".to_string(),
                },
            ) {
                Ok(response) if response.ok => response
                    .result
                    .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|text| text.parse().ok())
                    .collect(),
                Ok(response) => {
                    eprintln!(
                        "logjail: import-bans: {}",
                        response
                            .error
                            .unwrap_or_else(|| "the daemon refused".to_string())
                    );
                    return ExitCode::FAILURE;
                }
                Err(error) => {
                    eprintln!("logjail: import-bans: {error}");
                    return ExitCode::FAILURE;
                }
            };
            held.insert(jail.clone(), current);
        }
        if held.get(&jail).is_some_and(|set| set.contains(&ip)) {
            already += 1;
            continue;
        }
        match call(
            socket,
            Request::Ban {
                jail: jail.clone(),
                ip: ip.to_string(),
                duration: None,
            },
        ) {
            Ok(response) if response.ok => {
                banned += 1;
                if let Some(set) = held.get_mut(&jail) {
                    set.insert(ip);
                }
            }
            Ok(response) => {
                refused += 1;
                eprintln!(
                    "logjail: import-bans: {jail} {ip}: {}",
                    response.error.unwrap_or_else(|| "refused".to_string())
                );
            }
            Err(error) => {
                eprintln!("logjail: import-bans: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("import-bans: {banned} banned, {already} already banned, {refused} refused");
    if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
