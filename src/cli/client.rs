//! The fail2ban-client side of the CLI: `status`, `ban`, `unban`, `banned`, `get`, `set`,
//! `reload`, `ping`, `version`, sent to the daemon's control socket.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use crate::control::client::call;
use crate::control::protocol::{BanView, ChangeOutcome, DaemonStatus, JailDetail, Request};

/// Sends `request`, prints the answer as text (or JSON), and picks the exit code.
pub fn run(socket: &Path, request: Request, json: bool) -> ExitCode {
    let shown = request.clone();
    let response = match call(socket, request) {
        Ok(response) => response,
        Err(error) => {
            eprintln!("logjail: {error}");
            return ExitCode::FAILURE;
        }
    };
    if !response.ok {
        let error = response
            .error
            .unwrap_or_else(|| "the daemon refused".to_string());
        if json {
            let mut answer = serde_json::json!({"ok": false, "error": error});
            if let Some(kind) = response.kind {
                answer["kind"] = serde_json::json!(kind);
            }
            println!("{answer}");
        } else {
            eprintln!("logjail: {error}");
        }
        return ExitCode::FAILURE;
    }
    let result = response.result.unwrap_or(serde_json::Value::Null);
    if json {
        println!("{result}");
        return ExitCode::SUCCESS;
    }
    match render(&shown, &result) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("logjail: the daemon's answer is not understood: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Text output, shaped like fail2ban-client's where there is one.
fn render(request: &Request, result: &serde_json::Value) -> Result<String, serde_json::Error> {
    let mut out = String::new();
    match request {
        Request::Status { jail: None } => {
            let status: DaemonStatus = serde_json::from_value(result.clone())?;
            let names: Vec<&str> = status.jails.iter().map(|j| j.name.as_str()).collect();
            let _ = writeln!(out, "Status");
            let _ = writeln!(out, "|- Number of jail:\t{}", status.jails.len());
            let _ = writeln!(out, "|- Firewall:\t\t{}", status.firewall);
            if let Some(fleet) = &status.fleet {
                let state = if fleet.degraded {
                    "degraded (Redis unreachable; local bans go on)"
                } else {
                    "connected"
                };
                let _ = writeln!(out, "|- Fleet:\t\t{} as {}", state, fleet.member);
                let _ = writeln!(out, "|  |- Members seen:\t{}", fleet.members.join(", "));
                let _ = writeln!(
                    out,
                    "|  |- Last sync:\t{}",
                    fleet.last_sync.as_deref().unwrap_or("never")
                );
                let _ = writeln!(out, "|  |- Lag:\t\t{} ms", fleet.lag_ms);
                let _ = writeln!(out, "|  `- Errors:\t\t{}", fleet.errors);
            }
            let _ = writeln!(out, "`- Jail list:\t\t{}", names.join(", "));
        }
        Request::Status { jail: Some(_) } => {
            let detail: JailDetail = serde_json::from_value(result.clone())?;
            let s = &detail.summary;
            let _ = writeln!(out, "Status for the jail: {}", s.name);
            if let Some(definer) = &detail.defined_by {
                let _ = writeln!(out, "|- Defined by:\t\t{definer}");
            }
            let _ = writeln!(out, "|- Filter");
            let _ = writeln!(out, "|  |- Currently failed:\t{}", s.currently_failed);
            let _ = writeln!(out, "|  |- Total failed:\t{}", s.total_failed);
            let _ = writeln!(out, "|  `- Sources:\t\t{}", detail.sources.join(", "));
            let _ = writeln!(out, "`- Actions");
            let _ = writeln!(out, "   |- Currently banned:\t{}", s.currently_banned);
            let _ = writeln!(out, "   |- Total banned:\t{}", s.total_banned);
            let _ = writeln!(out, "   `- Banned IP list:\t{}", detail.banned.join(" "));
        }
        Request::Banned { .. } => {
            let bans: Vec<BanView> = serde_json::from_value(result.clone())?;
            for ban in bans {
                let end = ban.end.as_deref().unwrap_or("permanent");
                let from = ban
                    .fleet_member
                    .as_deref()
                    .map(|member| format!("\tfrom fleet member {member}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{}\t{}\tsince {}\tuntil {}\t(ban #{}){from}",
                    ban.jail, ban.ip, ban.start, end, ban.ban_count
                );
            }
        }
        Request::Ban { .. } | Request::Unban { .. } | Request::Set { .. } => {
            let outcome: ChangeOutcome = serde_json::from_value(result.clone())?;
            let _ = writeln!(out, "{}", outcome.message);
        }
        Request::Get { .. } | Request::Filters => match result {
            serde_json::Value::Array(items) => {
                for item in items {
                    let _ = writeln!(out, "{}", plain(item));
                }
            }
            other => {
                let _ = writeln!(out, "{}", plain(other));
            }
        },
        Request::Ping | Request::Version | Request::Reload => {
            let _ = writeln!(out, "{}", plain(result));
        }
    }
    Ok(out)
}

fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
