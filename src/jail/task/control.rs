//! Answers control requests about jails (status, ban, unban, get, set) inside the jail task,
//! which owns the jails: no locks, and every answer sees a consistent state.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use crate::address::AddressError;
use crate::control::protocol::{
    BanView, ChangeOutcome, DaemonStatus, ErrorKind, JailDetail, JailSummary, Request,
    ResponseEnvelope,
};
use crate::duration::{DurationError, format_duration, parse_bantime, parse_duration};
use crate::jail::ignore::IgnoreEntryError;
use crate::jail::{ActiveBan, BanRefused, JailSettings, SettingsError};

use super::{CountedHistory, Effects, JailRuntime};

/// What the handlers need besides the jails.
pub struct Context<'a> {
    pub history: &'a mut CountedHistory,
    pub effects: &'a Effects,
    pub now: DateTime<Utc>,
    /// Firewall backend in use, for `status`.
    pub firewall: &'a str,
}

/// Why a request was refused. The wording is what the CLI prints; [`kind`](Self::kind) is
/// what the protocol carries for programs.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("no jail named \"{name}\" (jails: {})", jails.join(", "))]
    UnknownJail { name: String, jails: Vec<String> },
    #[error(transparent)]
    Address(#[from] AddressError),
    /// A duration given for `setting` (`duration` for `ban --duration`).
    #[error("{setting}: {source}")]
    Duration {
        setting: &'static str,
        source: DurationError,
    },
    #[error("maxretry: `{0}` is not a whole number")]
    NotANumber(String),
    #[error("say which address to unban, or --all")]
    UnbanWhat,
    #[error("{host} is not banned{}", jail.as_ref().map(|j| format!(" in {j}")).unwrap_or_default())]
    NotBanned { host: IpAddr, jail: Option<String> },
    #[error("unknown setting \"{key}\" ({known})")]
    UnknownSetting { key: String, known: &'static str },
    #[error("{jail}: {value} is not in ignoreip")]
    NotIgnored { jail: String, value: String },
    #[error(transparent)]
    Ignore(#[from] IgnoreEntryError),
    #[error(transparent)]
    Refused(#[from] BanRefused),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("reload is handled by the daemon, not the jails")]
    Misrouted,
    #[error("cannot encode the answer: {0}")]
    Encode(#[from] serde_json::Error),
}

impl AnswerError {
    /// The class of error, for programs reading the protocol.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AnswerError::UnknownJail { .. } | AnswerError::NotBanned { .. } => ErrorKind::NotFound,
            AnswerError::NotIgnored { .. } => ErrorKind::NotFound,
            AnswerError::Refused(_) => ErrorKind::Refused,
            AnswerError::Misrouted | AnswerError::Encode(_) => ErrorKind::Internal,
            AnswerError::Address(_)
            | AnswerError::Duration { .. }
            | AnswerError::NotANumber(_)
            | AnswerError::UnbanWhat
            | AnswerError::UnknownSetting { .. }
            | AnswerError::Ignore(_)
            | AnswerError::Settings(_) => ErrorKind::Invalid,
        }
    }
}

/// Answers one request.
pub async fn answer(
    jails: &mut [JailRuntime],
    request: Request,
    context: Context<'_>,
) -> ResponseEnvelope {
    match handle(jails, request, context).await {
        Ok(value) => ResponseEnvelope::success(value),
        Err(error) => ResponseEnvelope::failure_of(error.kind(), error.to_string()),
    }
}

fn to_value<T: serde::Serialize>(value: T) -> Result<serde_json::Value, AnswerError> {
    Ok(serde_json::to_value(value)?)
}

async fn handle(
    jails: &mut [JailRuntime],
    request: Request,
    context: Context<'_>,
) -> Result<serde_json::Value, AnswerError> {
    match request {
        Request::Ping => Ok(json!("pong")),
        Request::Version => Ok(json!(env!("CARGO_PKG_VERSION"))),
        Request::Filters => Ok(json!(crate::filter::builtin::names().collect::<Vec<_>>())),
        Request::Reload => Err(AnswerError::Misrouted),
        Request::Status { jail: None } => to_value(DaemonStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            jails: jails.iter().map(summary).collect(),
            firewall: context.firewall.to_string(),
            fleet: context
                .effects
                .fleet
                .as_ref()
                .map(|fleet| fleet.health.status(&fleet.member)),
        }),
        Request::Status { jail: Some(name) } => {
            let runtime = find(jails, &name)?;
            to_value(JailDetail {
                summary: summary(runtime),
                sources: runtime.sources.iter().cloned().collect(),
                banned: runtime.jail.banned().map(|b| b.host.to_string()).collect(),
                defined_by: runtime.definer.describe(),
            })
        }
        Request::Banned { ip } => {
            let wanted = ip.as_deref().map(parse_ip).transpose()?;
            let mut views = Vec::new();
            for runtime in jails.iter() {
                for ban in runtime.jail.banned() {
                    if wanted.is_none_or(|w| w == ban.host) {
                        let mut view = ban_view(&runtime.name, ban);
                        view.fleet_member = runtime.fleet_origins.get(&ban.host).cloned();
                        views.push(view);
                    }
                }
            }
            to_value(views)
        }
        Request::Ban { jail, ip, duration } => {
            let host = parse_ip(&ip)?;
            let bantime = duration
                .as_deref()
                .map(parse_bantime)
                .transpose()
                .map_err(|source| AnswerError::Duration {
                    setting: "duration",
                    source,
                })?;
            let runtime = find_mut(jails, &jail)?;
            let order = runtime.jail.ban_manually(
                host,
                context.now,
                bantime,
                context.history,
                &mut rand::rng(),
            )?;
            context.effects.banned(&order, None, &runtime.config).await;
            let message = format!("banned {host} in {jail} for {}", order.bantime);
            to_value(ChangeOutcome {
                message,
                persistent: true,
                count: 1,
            })
        }
        Request::Unban { jail, ip, all } => {
            let host = ip.as_deref().map(parse_ip).transpose()?;
            if host.is_none() && !all {
                return Err(AnswerError::UnbanWhat);
            }
            if let Some(name) = &jail {
                find(jails, name)?;
            }
            let mut lifted = 0;
            for runtime in jails.iter_mut() {
                if jail.as_deref().is_some_and(|name| name != &*runtime.name) {
                    continue;
                }
                let ended = match host {
                    Some(host) => runtime.jail.unban(host).into_iter().collect(),
                    None => runtime.jail.unban_all(),
                };
                for ban in ended {
                    runtime.fleet_origins.remove(&ban.host);
                    if context.effects.share_unban(
                        &runtime.name,
                        ban.host,
                        ban.end,
                        &runtime.config,
                        context.now,
                    ) {
                        runtime.fleet_lifted.note(ban.host, context.now, ban.end);
                    }
                    context
                        .effects
                        .unbanned(&runtime.name, &ban, "manual", &runtime.config, context.now)
                        .await;
                    lifted += 1;
                }
            }
            if lifted == 0
                && let Some(host) = host
            {
                return Err(AnswerError::NotBanned { host, jail });
            }
            to_value(ChangeOutcome {
                message: format!("lifted {lifted} ban{}", if lifted == 1 { "" } else { "s" }),
                persistent: true,
                count: lifted,
            })
        }
        Request::Get { jail, key } => {
            let runtime = find(jails, &jail)?;
            let settings = runtime.jail.settings();
            match key.as_str() {
                "ignoreip" => Ok(json!(
                    settings
                        .ignore
                        .networks()
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                )),
                "bantime" => Ok(json!(settings.bantime.to_string())),
                "findtime" => Ok(json!(format_duration(settings.findtime))),
                "maxretry" => Ok(json!(settings.maxretry)),
                "banned" => Ok(json!(
                    runtime
                        .jail
                        .banned()
                        .map(|b| b.host.to_string())
                        .collect::<Vec<_>>()
                )),
                other => Err(AnswerError::UnknownSetting {
                    key: other.to_string(),
                    known: "ignoreip, bantime, findtime, maxretry, banned",
                }),
            }
        }
        Request::Set { jail, key, value } => {
            let runtime = find_mut(jails, &jail)?;
            let message = set(runtime, &key, &value)?;
            to_value(ChangeOutcome {
                message: format!(
                    "{message} (runtime only: not kept across restarts; edit the configuration to keep it)"
                ),
                persistent: false,
                count: 1,
            })
        }
    }
}

fn set(runtime: &mut JailRuntime, key: &str, value: &str) -> Result<String, AnswerError> {
    let jail = &runtime.name;
    match key {
        "addignoreip" => {
            let added = runtime.jail.add_ignore(value)?;
            Ok(if added {
                format!("{jail}: {value} added to ignoreip")
            } else {
                format!("{jail}: {value} was already in ignoreip")
            })
        }
        "delignoreip" => {
            let removed = runtime.jail.remove_ignore(value)?;
            if removed {
                Ok(format!("{jail}: {value} removed from ignoreip"))
            } else {
                Err(AnswerError::NotIgnored {
                    jail: jail.to_string(),
                    value: value.to_string(),
                })
            }
        }
        "bantime" | "findtime" | "maxretry" => {
            let mut settings: JailSettings = runtime.jail.settings().clone();
            match key {
                "bantime" => {
                    settings.bantime =
                        parse_bantime(value).map_err(|source| AnswerError::Duration {
                            setting: "bantime",
                            source,
                        })?
                }
                "findtime" => {
                    settings.findtime =
                        parse_duration(value).map_err(|source| AnswerError::Duration {
                            setting: "findtime",
                            source,
                        })?
                }
                _ => {
                    settings.maxretry = value
                        .parse()
                        .map_err(|_| AnswerError::NotANumber(value.to_string()))?
                }
            }
            runtime.jail.update_settings(settings)?;
            Ok(format!("{jail}: {key} set to {value}"))
        }
        other => Err(AnswerError::UnknownSetting {
            key: other.to_string(),
            known: "addignoreip, delignoreip, bantime, findtime, maxretry",
        }),
    }
}

/// An address named by a request (ban, unban, banned), in canonical form; never-a-client
/// addresses are refused with the reason (see [`crate::address`]).
fn parse_ip(text: &str) -> Result<IpAddr, AnswerError> {
    Ok(crate::address::parse_client(text)?)
}

fn find<'a>(jails: &'a [JailRuntime], name: &str) -> Result<&'a JailRuntime, AnswerError> {
    jails
        .iter()
        .find(|r| &*r.name == name)
        .ok_or_else(|| unknown_jail(jails, name))
}

fn find_mut<'a>(
    jails: &'a mut [JailRuntime],
    name: &str,
) -> Result<&'a mut JailRuntime, AnswerError> {
    match jails.iter().position(|r| &*r.name == name) {
        Some(slot) => Ok(&mut jails[slot]),
        None => Err(unknown_jail(jails, name)),
    }
}

fn unknown_jail(jails: &[JailRuntime], name: &str) -> AnswerError {
    AnswerError::UnknownJail {
        name: name.to_string(),
        jails: jails.iter().map(|r| r.name.to_string()).collect(),
    }
}

fn summary(runtime: &JailRuntime) -> JailSummary {
    let status = runtime.jail.status();
    JailSummary {
        name: runtime.name.to_string(),
        filter: runtime.config.filter.clone(),
        currently_failed: status.currently_failed as u64,
        total_failed: status.total_failed,
        currently_banned: status.currently_banned as u64,
        total_banned: status.total_banned,
    }
}

fn ban_view(jail: &Arc<str>, ban: &ActiveBan) -> BanView {
    BanView {
        jail: jail.to_string(),
        ip: ban.host.to_string(),
        start: ban.start.to_rfc3339_opts(SecondsFormat::Secs, true),
        end: ban
            .end
            .map(|end| end.to_rfc3339_opts(SecondsFormat::Secs, true)),
        ban_count: ban.ban_count,
        fleet_member: None,
    }
}
