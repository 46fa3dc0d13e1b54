//! Webhooks: one JSON POST per notice, shaped for the receiver, tried again with growing
//! waits when the receiver is down or busy.

use std::time::Duration;

use chrono::SecondsFormat;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Notice, truncate};
use crate::config::action::{NotifyEvent, WebhookConfig, WebhookFormat};
use crate::duration::BanTime;

/// The most of a refusal's body kept for the log.
const BODY_IN_LOG: usize = 512;

/// The HTTP client every webhook shares. Redirects are not followed: a webhook URL that
/// moves is a configuration error to see, and following could resend headers elsewhere.
pub(super) fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("logjail/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| error_text(&error))
}

/// The JSON body for `notice` in `format`.
///
/// The chat formats hold one sentence built only from logjail's own values (the address,
/// the jail name, numbers): the matched log lines are attacker-written and could ping
/// everyone or fake links, so they appear only in the generic format, as JSON strings.
pub fn payload(format: WebhookFormat, notice: &Notice) -> Value {
    match format {
        WebhookFormat::Generic => json!({
            "event": notice.event.name(),
            "jail": notice.jail,
            "ip": notice.host.to_string(),
            "failures": notice.failures,
            "bantime_seconds": notice.bantime.finite().map(|d| d.as_secs()),
            "ban_count": notice.ban_count,
            "origin": notice.origin,
            "time": notice.time.to_rfc3339_opts(SecondsFormat::Secs, true),
            "dry_run": notice.dry_run,
            "matches": notice.matches,
        }),
        WebhookFormat::Slack => json!({ "text": sentence(notice) }),
        WebhookFormat::Discord => json!({
            "content": sentence(notice),
            // Belt and braces: nothing in the sentence can mention anyone, and Discord is told
            // so too.
            "allowed_mentions": { "parse": [] },
        }),
    }
}

/// One readable line: `logjail: banned 203.0.113.7 in jail `sshd` for 10m after 5 failures
/// (ban 2).` Jail names are letters, digits, `-` and `_` (checked by the configuration), and
/// the backticks keep `_` from turning into italics.
pub fn sentence(notice: &Notice) -> String {
    let host = notice.host;
    let jail = &notice.jail;
    let prefix = if notice.dry_run {
        "logjail (dry run, nothing blocked)"
    } else {
        "logjail"
    };
    match notice.event {
        NotifyEvent::Ban => {
            let length = match notice.bantime {
                BanTime::Finite(duration) => {
                    format!("for {}", crate::duration::format_duration(duration))
                }
                BanTime::Permanent => "permanently".to_string(),
            };
            let verb = if notice.dry_run {
                "would ban"
            } else {
                "banned"
            };
            let failures = match notice.failures {
                0 => String::new(),
                1 => " after 1 failure".to_string(),
                n => format!(" after {n} failures"),
            };
            let repeat = if notice.ban_count > 1 {
                format!(" (ban {})", notice.ban_count)
            } else {
                String::new()
            };
            format!("{prefix}: {verb} {host} in jail `{jail}` {length}{failures}{repeat}.")
        }
        NotifyEvent::Unban => {
            let verb = if notice.dry_run {
                "would unban"
            } else {
                "unbanned"
            };
            format!("{prefix}: {verb} {host} in jail `{jail}`.")
        }
    }
}

/// Posts the notice, trying again on connection errors, timeouts, 5xx and 429 answers
/// (waiting `backoff`, then twice as long each time). Returns how many tries were made and
/// how the last ended. Shutdown ends any wait at once.
pub(super) async fn send(
    client: &reqwest::Client,
    config: &WebhookConfig,
    notice: &Notice,
    backoff: Duration,
    shutdown: &CancellationToken,
) -> (u32, Result<(), String>) {
    let body = payload(config.format, notice);
    let mut tries = 0;
    let mut wait = backoff;
    loop {
        tries += 1;
        let mut request = client
            .post(config.url.as_str())
            .timeout(config.timeout)
            .json(&body);
        for (name, value) in &config.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let outcome = tokio::select! {
            outcome = try_once(request) => outcome,
            () = shutdown.cancelled() => return (tries, Err("stopped at shutdown".to_string())),
        };
        let error = match outcome {
            Ok(()) => return (tries, Ok(())),
            Err(Failure::Final(error)) => return (tries, Err(error)),
            Err(Failure::Retryable(error)) => error,
        };
        if tries > config.retries {
            return (tries, Err(error));
        }
        tracing::debug!(
            target: "logjail::action",
            to = %config.target(),
            tries,
            %error,
            retry_in = ?wait,
            "webhook failed; trying again"
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return (tries, Err(format!("{error}; stopped at shutdown"))),
        }
        wait = wait.saturating_mul(2);
    }
}

enum Failure {
    /// Worth another try: the receiver may be back or less busy.
    Retryable(String),
    /// Another try would get the same answer.
    Final(String),
}

async fn try_once(request: reqwest::RequestBuilder) -> Result<(), Failure> {
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(error) if error.is_builder() => return Err(Failure::Final(error_text(&error))),
        Err(error) => return Err(Failure::Retryable(error_text(&error))),
    };
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let mut body = Vec::new();
    while body.len() < BODY_IN_LOG {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let body = String::from_utf8_lossy(&body);
    let body = truncate(body.trim(), BODY_IN_LOG);
    let message = if body.is_empty() {
        format!("answered {status}")
    } else {
        format!("answered {status}: {body:?}")
    };
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Err(Failure::Retryable(message))
    } else {
        Err(Failure::Final(message))
    }
}

/// A client error with its causes (`connection refused`, `operation timed out`) but without
/// the URL, which may hold a token.
fn error_text(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::TimeZone;

    use super::*;

    fn notice(event: NotifyEvent) -> Notice {
        Notice {
            event,
            jail: "ssh_main".to_string(),
            host: "203.0.113.7".parse().unwrap(),
            failures: 5,
            bantime: BanTime::Finite(Duration::from_secs(600)),
            ban_count: 2,
            matches: vec!["Failed password for @everyone <http://evil> from 6.6.6.6".to_string()],
            origin: Some("file /var/log/auth.log".to_string()),
            time: Utc.with_ymd_and_hms(2026, 11, 26, 7, 0, 1).unwrap(),
            dry_run: false,
            actions: Arc::from(Vec::new()),
        }
    }

    use chrono::Utc;

    #[test]
    fn generic_payload_has_every_field() {
        let body = payload(WebhookFormat::Generic, &notice(NotifyEvent::Ban));
        assert_eq!(
            body,
            json!({
                "event": "ban",
                "jail": "ssh_main",
                "ip": "203.0.113.7",
                "failures": 5,
                "bantime_seconds": 600,
                "ban_count": 2,
                "origin": "file /var/log/auth.log",
                "time": "2026-11-26T07:00:01Z",
                "dry_run": false,
                "matches": ["Failed password for @everyone <http://evil> from 6.6.6.6"],
            })
        );
        let mut permanent = notice(NotifyEvent::Unban);
        permanent.bantime = BanTime::Permanent;
        permanent.origin = None;
        let body = payload(WebhookFormat::Generic, &permanent);
        assert_eq!(body["bantime_seconds"], Value::Null);
        assert_eq!(body["origin"], Value::Null);
        assert_eq!(body["event"], "unban");
    }

    #[test]
    fn chat_formats_hold_no_log_text() {
        let ban = notice(NotifyEvent::Ban);
        let slack = payload(WebhookFormat::Slack, &ban);
        assert_eq!(
            slack,
            json!({"text": "logjail: banned 203.0.113.7 in jail `ssh_main` for 10m after 5 failures (ban 2)."})
        );
        let discord = payload(WebhookFormat::Discord, &ban);
        assert_eq!(discord["content"], slack["text"]);
        assert_eq!(discord["allowed_mentions"], json!({"parse": []}));
        for body in [slack, discord] {
            let text = body.to_string();
            assert!(
                !text.contains("everyone") && !text.contains("evil"),
                "{text}"
            );
        }
    }

    #[test]
    fn sentences_for_unbans_dry_runs_and_permanent_bans() {
        let mut dry = notice(NotifyEvent::Ban);
        dry.dry_run = true;
        dry.bantime = BanTime::Permanent;
        dry.ban_count = 1;
        dry.failures = 1;
        assert_eq!(
            sentence(&dry),
            "logjail (dry run, nothing blocked): would ban 203.0.113.7 in jail `ssh_main` \
             permanently after 1 failure."
        );
        assert_eq!(
            sentence(&notice(NotifyEvent::Unban)),
            "logjail: unbanned 203.0.113.7 in jail `ssh_main`."
        );
    }
}
