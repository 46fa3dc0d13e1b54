//! `reload` (control socket or SIGHUP): the configuration is read again from where it came
//! from, validated, and only then applied to the jails, the firewall layout and the sources.
//! A configuration that does not validate changes nothing: the answer lists every error.

use tokio::sync::oneshot;

use crate::config::{Config, ConfigErrors, ConfigOrigin};
use crate::control::protocol::ErrorKind;
use crate::firewall::JailRule;
use crate::jail::task::JailTaskError;
use crate::messages::{Enforcement, JailEvent};
use crate::routing::Filters;
use crate::source::supervisor::SupervisorError;

use super::{Daemon, FirewallStage};

/// Why a reload changed nothing, or stopped half-way (sources).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the configuration \"{name}\" was not read from a file: nothing to reload")]
    NotFromFile { name: String },
    #[error(
        "reload refused, the running configuration stays ({} error{}):\n{errors}",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    )]
    Invalid { errors: ConfigErrors },
    #[error(
        "reload refused, the running configuration stays: the jails that block addresses ({}) \
         need a firewall, but logjail runs without one ({reason}); restart logjail once the \
         firewall works",
        blocking.join(", ")
    )]
    NeedsFirewall {
        blocking: Vec<String>,
        reason: String,
    },
    #[error(transparent)]
    Jails(#[from] JailTaskError),
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("the firewall is gone")]
    FirewallGone,
    #[error(transparent)]
    Sources(#[from] SupervisorError),
}

impl ReloadError {
    /// The class of error, for programs reading the control protocol.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ReloadError::NotFromFile { .. } | ReloadError::Invalid { .. } => ErrorKind::Invalid,
            ReloadError::Jails(_) => ErrorKind::Invalid,
            ReloadError::NeedsFirewall { .. }
            | ReloadError::ShuttingDown
            | ReloadError::FirewallGone => ErrorKind::Unavailable,
            ReloadError::Sources(_) => ErrorKind::Internal,
        }
    }
}

impl Daemon {
    /// Reads the configuration again and applies it; the answer says what changed.
    pub(super) async fn reload(&mut self) -> Result<String, ReloadError> {
        let config = match &self.config.origin {
            ConfigOrigin::File(path) => Config::load(path),
            ConfigOrigin::Embedded => Config::load_or_default(None),
            ConfigOrigin::Text(name) => {
                return Err(ReloadError::NotFromFile { name: name.clone() });
            }
        }
        .map_err(|errors| ReloadError::Invalid { errors })?;
        if let FirewallStage::Missing(reason) = &self.firewall {
            let blocking: Vec<String> = config
                .jails
                .iter()
                .filter(|j| j.enabled && JailRule::from_config(j).acts())
                .map(|j| j.name.clone())
                .collect();
            if !blocking.is_empty() {
                return Err(ReloadError::NeedsFirewall {
                    blocking,
                    reason: reason.to_string(),
                });
            }
        }
        let daemon_wide_changes = daemon_wide_differences(&self.config, &config);

        let (reply, answer) = oneshot::channel();
        self.pipeline
            .jails
            .send(JailEvent::Reconfigure {
                jails: config.jails.clone(),
                own_addresses: self.own.clone(),
                reply,
            })
            .await
            .map_err(|_| ReloadError::ShuttingDown)?;
        let summary = answer.await.map_err(|_| ReloadError::ShuttingDown)??;

        if let Some(enforcer) = &self.enforcer {
            // After the jails lifted the removed jails' bans (queued first), lay out the rest.
            let removed = summary
                .removed
                .iter()
                .map(|jail| Enforcement::Remove { jail: jail.clone() });
            let defined = config
                .jails
                .iter()
                .filter(|j| j.enabled)
                .map(|j| Enforcement::Define(JailRule::from_config(j)));
            for change in removed.chain(defined) {
                enforcer
                    .queue
                    .send(change)
                    .await
                    .map_err(|_| ReloadError::FirewallGone)?;
            }
        }

        // Positions for files that start being followed now: the store has what earlier runs
        // (or this one, before it stopped following) wrote.
        let positions = self.store.handle.positions().await;
        let filters = Filters::of(&config);
        let sources = &mut self.sources;
        sources
            .files
            .apply(&config.jails, &filters, &positions)
            .await?;
        sources
            .journals
            .apply(&config.jails, &filters, &positions)
            .await?;
        if let Some(docker) = &sources.docker {
            docker.apply(&config, &filters).await;
        }
        if let Some(pods) = &sources.pods {
            pods.apply(&config, &filters).await;
        }

        let mut message = format!(
            "reloaded {}: {} jails ({} added, {} removed, {} changed, {} unchanged)",
            config.origin,
            summary.added.len() + summary.changed.len() + summary.unchanged.len(),
            summary.added.len(),
            summary.removed.len(),
            summary.changed.len(),
            summary.unchanged.len()
        );
        for (list, label) in [
            (&summary.added, "added"),
            (&summary.removed, "removed"),
            (&summary.changed, "changed"),
        ] {
            if !list.is_empty() {
                message.push_str(&format!("; {label}: {}", list.join(", ")));
            }
        }
        if !daemon_wide_changes.is_empty() {
            message.push_str(&format!(
                "; restart logjail to apply the changed {}",
                daemon_wide_changes.join(", ")
            ));
        }
        tracing::info!("{message}");
        self.config = config;
        Ok(message)
    }
}

/// Sections a reload cannot apply to a running daemon (sockets, paths, backends).
fn daemon_wide_differences(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.store != new.store {
        changed.push("store");
    }
    if old.control != new.control {
        changed.push("control");
    }
    if old.firewall != new.firewall {
        changed.push("firewall");
    }
    if old.docker != new.docker {
        changed.push("docker");
    }
    if old.pods != new.pods {
        changed.push("pods");
    }
    if old.metrics != new.metrics {
        changed.push("metrics");
    }
    if old.log != new.log {
        changed.push("log");
    }
    changed
}
