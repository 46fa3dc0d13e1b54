//! The control protocol: one JSON request per line, one JSON response per line, versioned.
//!
//! JSON lines keep `socat`/`nc -U` debugging possible and need no extra framing; the version
//! lets an older CLI talking to a newer daemon fail with a clear message instead of garbage.

use serde::{Deserialize, Serialize};

/// Bumped when a request or response changes incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest request line the server reads; a control request is small.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    Ping,
    Version,
    /// All jails with counts, or one jail's tree.
    Status {
        #[serde(default)]
        jail: Option<String>,
    },
    /// Bans `ip` in `jail`, for `duration` or the jail's bantime.
    Ban {
        jail: String,
        ip: String,
        #[serde(default)]
        duration: Option<String>,
    },
    /// Lifts bans: of `ip` in `jail`, of `ip` in every jail (`jail` absent), or every ban
    /// (`all`, optionally limited to `jail`).
    Unban {
        #[serde(default)]
        jail: Option<String>,
        #[serde(default)]
        ip: Option<String>,
        #[serde(default)]
        all: bool,
    },
    /// Bans in force, optionally only those of one address.
    Banned {
        #[serde(default)]
        ip: Option<String>,
    },
    /// `get JAIL ignoreip|bantime|findtime|maxretry|banned`.
    Get {
        jail: String,
        key: String,
    },
    /// `set JAIL addignoreip|delignoreip|bantime|findtime|maxretry VALUE`.
    Set {
        jail: String,
        key: String,
        value: String,
    },
    Reload,
    Filters,
}

impl Request {
    /// Whether answering it may change what the firewall holds: such an answer waits until
    /// the firewall has applied the change.
    pub fn changes_bans(&self) -> bool {
        matches!(self, Request::Ban { .. } | Request::Unban { .. })
    }
}

/// A request as sent on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub version: u32,
    #[serde(flatten)]
    pub request: Request,
}

/// A response as sent on the wire: `ok` with a result, or an error message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    pub version: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The class of a failure, for programs; absent from answers of older daemons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ErrorKind>,
}

/// What kind of failure an answer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No such jail, or the address is not banned or listed.
    NotFound,
    /// The request names something malformed: an address, a duration, a setting.
    Invalid,
    /// The jail will not do it (an ignored address, one already banned).
    Refused,
    /// The daemon cannot do it now (shutting down, no firewall, a reload refused).
    Unavailable,
    /// A defect in logjail.
    Internal,
}

impl ResponseEnvelope {
    pub fn success(result: serde_json::Value) -> Self {
        ResponseEnvelope {
            version: PROTOCOL_VERSION,
            ok: true,
            result: Some(result),
            error: None,
            kind: None,
        }
    }

    pub fn failure(error: impl Into<String>) -> Self {
        ResponseEnvelope {
            version: PROTOCOL_VERSION,
            ok: false,
            result: None,
            error: Some(error.into()),
            kind: None,
        }
    }

    /// A failure with its kind.
    pub fn failure_of(kind: ErrorKind, error: impl Into<String>) -> Self {
        ResponseEnvelope {
            kind: Some(kind),
            ..ResponseEnvelope::failure(error)
        }
    }
}

/// One jail in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailSummary {
    pub name: String,
    pub filter: Option<String>,
    pub currently_failed: u64,
    pub total_failed: u64,
    pub currently_banned: u64,
    pub total_banned: u64,
}

/// `status JAIL`: Fail2Ban's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailDetail {
    #[serde(flatten)]
    pub summary: JailSummary,
    /// Where its lines come from: files, containers, journal.
    pub sources: Vec<String>,
    pub banned: Vec<String>,
    /// Who defined the jail when the configuration file did not (`labels of container web`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defined_by: Option<String>,
}

/// `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub version: String,
    pub jails: Vec<JailSummary>,
    /// The firewall backend in use (`nft`, `legacy`) or `none`.
    pub firewall: String,
    /// The fleet, when this member shares bans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
}

/// The fleet as this member sees it, in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    /// This member's name.
    pub member: String,
    /// Redis is unreachable: local bans go on, the fleet syncs when it returns.
    pub degraded: bool,
    /// Members whose heartbeat is in Redis (this one included).
    pub members: Vec<String>,
    /// When the last full sync with Redis finished (RFC 3339), if ever.
    pub last_sync: Option<String>,
    /// Delay of the last ban received from another member, start to arrival, in ms.
    pub lag_ms: i64,
    /// Redis failures and refused records since start.
    pub errors: u64,
}

/// One ban in `banned`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanView {
    pub jail: String,
    pub ip: String,
    /// RFC 3339.
    pub start: String,
    /// RFC 3339, `None` for a permanent ban.
    pub end: Option<String>,
    pub ban_count: u32,
    /// The fleet member the ban came from; absent for a ban made here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_member: Option<String>,
}

/// The answer of a change (`ban`, `unban`, `set`): what happened and whether it lasts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeOutcome {
    pub message: String,
    /// Whether the change survives a restart (bans do, runtime settings do not).
    pub persistent: bool,
    /// How many bans or entries it touched.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_json_lines() {
        let requests = [
            Request::Ping,
            Request::Status {
                jail: Some("sshd".into()),
            },
            Request::Ban {
                jail: "sshd".into(),
                ip: "192.0.2.1".into(),
                duration: Some("1h".into()),
            },
            Request::Unban {
                jail: None,
                ip: None,
                all: true,
            },
            Request::Set {
                jail: "sshd".into(),
                key: "addignoreip".into(),
                value: "10.0.0.0/8".into(),
            },
        ];
        for request in requests {
            let line = serde_json::to_string(&RequestEnvelope {
                version: PROTOCOL_VERSION,
                request: request.clone(),
            })
            .unwrap();
            assert!(!line.contains('\n'));
            let back: RequestEnvelope = serde_json::from_str(&line).unwrap();
            assert_eq!(back.request, request);
        }
        let text = r#"{"version":1,"command":"status"}"#;
        let parsed: RequestEnvelope = serde_json::from_str(text).unwrap();
        assert_eq!(parsed.request, Request::Status { jail: None });
        assert!(
            serde_json::from_str::<RequestEnvelope>(r#"{"version":1,"command":"rm-rf"}"#).is_err()
        );
    }
}
