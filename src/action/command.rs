//! Command actions: a program run per notice with an argument vector filled from the notice,
//! never through a shell, killed (with everything it started) at its timeout.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use chrono::SecondsFormat;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Notice, bantime_seconds, truncate};
use crate::config::action::{CommandConfig, Placeholder};

/// The most of a command's stdout or stderr kept for the log; the rest is read and dropped
/// so that a chatty command never blocks on a full pipe.
const OUTPUT_KEPT: usize = 4096;
/// How much of it is shown in one log line.
const OUTPUT_IN_LOG: usize = 1024;
/// How long to wait for the output once the program has exited: a background process it
/// left behind may hold the pipes open for ever.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// The program as configured, for logs.
pub fn program(config: &CommandConfig) -> String {
    config
        .argv
        .first()
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// The argument vector for `notice`: each template filled in on its own, so whatever a value
/// holds (log lines included) stays one argument, and an argument that comes out empty stays
/// an empty argument.
pub fn command_line(config: &CommandConfig, notice: &Notice) -> Vec<String> {
    config
        .argv
        .iter()
        .map(|template| template.expand(|placeholder| value(placeholder, notice)))
        .collect()
}

fn value(placeholder: Placeholder, notice: &Notice) -> String {
    match placeholder {
        Placeholder::Event => notice.event.name().to_string(),
        Placeholder::Ip => notice.host.to_string(),
        Placeholder::Jail => notice.jail.clone(),
        Placeholder::Failures => notice.failures.to_string(),
        Placeholder::Bantime => bantime_seconds(notice.bantime).to_string(),
        Placeholder::BanCount => notice.ban_count.to_string(),
        Placeholder::Origin => notice.origin.clone().unwrap_or_default(),
        Placeholder::Time => notice.time.to_rfc3339_opts(SecondsFormat::Secs, true),
        Placeholder::Matches => notice.matches.join("\n"),
    }
}

/// Runs the command for `notice`: stdin empty, output captured, killed at its timeout or at
/// shutdown. Exit status 0 is success; anything else is an error saying why.
pub(super) async fn run(
    config: &CommandConfig,
    notice: &Notice,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let argv = command_line(config, notice);
    let Some((program, arguments)) = argv.split_first() else {
        return Err("no program to run".to_string());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout also ends what it started.
        .process_group(0)
        // Should this task be dropped (the notifier stopping), the program goes with it.
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|error| format!("cannot start {program}: {error}"))?;
    let mut group = ProcessGroup::of(&child);
    let stdout = child.stdout.take().map(read_capped);
    let stderr = child.stderr.take().map(read_capped);

    let ended = tokio::select! {
        status = child.wait() => Ended::Exited(status),
        () = tokio::time::sleep(config.timeout) => Ended::TimedOut,
        () = shutdown.cancelled() => Ended::Shutdown,
    };
    let status = match ended {
        Ended::Exited(Ok(status)) => {
            // Reaped: its id may be reused from now on, so it must not be signalled.
            group.forget();
            status
        }
        Ended::Exited(Err(error)) => {
            kill(&mut child, &mut group).await;
            return Err(format!("cannot wait for {program}: {error}"));
        }
        Ended::TimedOut => {
            kill(&mut child, &mut group).await;
            abort(stdout);
            abort(stderr);
            return Err(format!(
                "timed out after {}; killed",
                describe_timeout(config.timeout)
            ));
        }
        Ended::Shutdown => {
            kill(&mut child, &mut group).await;
            abort(stdout);
            abort(stderr);
            return Err("stopped at shutdown; killed".to_string());
        }
    };
    let stdout = collect(stdout).await;
    let stderr = collect(stderr).await;
    if status.success() {
        if !stdout.is_empty() {
            tracing::debug!(target: "logjail::action", program, stdout = ?stdout, "command output");
        }
        Ok(())
    } else {
        Err(failure(status, &stdout, &stderr))
    }
}

/// `30s`, `2m`, or `1500ms` for the short timeouts tests use.
fn describe_timeout(timeout: Duration) -> String {
    if timeout.subsec_nanos() == 0 {
        crate::duration::format_duration(timeout)
    } else {
        format!("{}ms", timeout.as_millis())
    }
}

enum Ended {
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
    Shutdown,
}

/// Kills the program's whole process group and reaps the program, so that nothing it
/// started outlives the timeout and no zombie is left.
async fn kill(child: &mut Child, group: &mut ProcessGroup) {
    group.kill();
    let _ = child.kill().await;
}

/// The process group a program leads (it was started with `process_group(0)`), killed when
/// this is dropped unless the program was reaped first: a task aborted mid-run leaves
/// nothing behind.
struct ProcessGroup(Option<Pid>);

impl ProcessGroup {
    fn of(child: &Child) -> Self {
        ProcessGroup(
            child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .map(Pid::from_raw),
        )
    }

    fn kill(&mut self) {
        if let Some(group) = self.0.take() {
            // The leader is not reaped yet, so its id still names its group.
            let _ = killpg(group, Signal::SIGKILL);
        }
    }

    fn forget(&mut self) {
        self.0 = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_capped(mut reader: impl AsyncRead + Unpin + Send + 'static) -> JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    let room = OUTPUT_KEPT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buffer[..read.min(room)]);
                }
            }
        }
        kept
    })
}

async fn collect(reader: Option<JoinHandle<Vec<u8>>>) -> String {
    let Some(mut reader) = reader else {
        return String::new();
    };
    match tokio::time::timeout(OUTPUT_GRACE, &mut reader).await {
        Ok(Ok(bytes)) => {
            let text = String::from_utf8_lossy(&bytes);
            truncate(text.trim(), OUTPUT_IN_LOG)
        }
        Ok(Err(_)) => String::new(),
        Err(_) => {
            reader.abort();
            String::new()
        }
    }
}

fn abort(reader: Option<JoinHandle<Vec<u8>>>) {
    if let Some(reader) = reader {
        reader.abort();
    }
}

fn failure(status: ExitStatus, stdout: &str, stderr: &str) -> String {
    // Debug formatting escapes line breaks and control characters: the output may echo log
    // text, which must not forge log lines of its own.
    if !stderr.is_empty() {
        format!("{status}, stderr: {stderr:?}")
    } else if !stdout.is_empty() {
        format!("{status}, stdout: {stdout:?}")
    } else {
        status.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::config::action::{ArgTemplate, NotifyEvent, NotifyOn};
    use crate::duration::BanTime;

    #[test]
    fn fills_each_argument_on_its_own() {
        let config = CommandConfig {
            argv: [
                "/usr/local/bin/notify",
                "--jail=<jail>",
                "<ip>",
                "<bantime>",
                "<origin>",
                "<matches>",
                "<event>/<failures>/<ban_count>",
                "<time>",
            ]
            .into_iter()
            .map(|text| ArgTemplate::parse(text).unwrap())
            .collect(),
            on: NotifyOn::default(),
            timeout: Duration::from_secs(5),
        };
        let notice = Notice {
            event: NotifyEvent::Ban,
            jail: "sshd".to_string(),
            host: "2001:db8::7".parse().unwrap(),
            failures: 5,
            bantime: BanTime::Permanent,
            ban_count: 3,
            matches: vec!["a b".to_string(), "$(rm -rf /); `x`".to_string()],
            origin: None,
            time: Utc.with_ymd_and_hms(2026, 11, 26, 7, 0, 1).unwrap(),
            dry_run: false,
            actions: Arc::from(Vec::new()),
        };
        assert_eq!(
            command_line(&config, &notice),
            [
                "/usr/local/bin/notify",
                "--jail=sshd",
                "2001:db8::7",
                "-1",
                "",
                "a b\n$(rm -rf /); `x`",
                "ban/5/3",
                "2026-11-26T07:00:01Z",
            ]
        );
        assert_eq!(program(&config), "/usr/local/bin/notify");
    }
}
