//! The daemon sections: docker, pods, store, firewall, control, metrics, log.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_yaml::Value;

use super::{Anchor, Place, Validator};
use crate::config::positions::YamlPath;
use crate::config::raw::{
    RawControl, RawDocker, RawFirewall, RawLog, RawMetrics, RawPods, RawStore,
};
use crate::config::sections::{
    ControlConfig, DockerConfig, FirewallConfig, LogConfig, MetricsConfig, PodsConfig,
    RequiredLabel, StoreConfig, check_docker_host,
};

impl Validator<'_> {
    pub(super) fn docker(&mut self, value: Option<&Value>, path: &YamlPath) -> DockerConfig {
        let mut config = DockerConfig::default();
        let Some(raw) = value.and_then(|v| self.mapping_of::<RawDocker>(v, path, &Place::file()))
        else {
            return config;
        };
        config.enabled = raw.enabled.unwrap_or(config.enabled);
        config.read_mode = raw.read_mode.unwrap_or(config.read_mode);
        for (i, text) in raw.require_labels.unwrap_or_default().iter().enumerate() {
            match RequiredLabel::parse(text) {
                Ok(required) => config.require_labels.push(required),
                Err(message) => self.report(
                    &Place::file(),
                    &path.key("require_labels").index(i),
                    Anchor::Value,
                    message,
                ),
            }
        }
        if let Some(host) = raw.host {
            match check_docker_host(&host) {
                Ok(()) => config.host = Some(host),
                Err(message) => {
                    self.report(&Place::file(), &path.key("host"), Anchor::Value, message)
                }
            }
        }
        config
    }

    pub(super) fn pods(&mut self, value: Option<&Value>, path: &YamlPath) -> PodsConfig {
        let mut config = PodsConfig::default();
        let Some(raw) = value.and_then(|v| self.mapping_of::<RawPods>(v, path, &Place::file()))
        else {
            return config;
        };
        config.enabled = raw.enabled.unwrap_or(config.enabled);
        if let Some(dir) = raw.log_dir
            && let Some(dir) = self.absolute_path(&dir, &path.key("log_dir"))
        {
            config.log_dir = dir;
        }
        if let Some(socket) = raw.runtime_socket {
            config.runtime_socket = self.absolute_path(&socket, &path.key("runtime_socket"));
        }
        config
    }

    pub(super) fn store(&mut self, value: Option<&Value>, path: &YamlPath) -> StoreConfig {
        let mut config = StoreConfig::default();
        if let Some(raw) = value.and_then(|v| self.mapping_of::<RawStore>(v, path, &Place::file()))
            && let Some(file) = raw.path
            && let Some(file) = self.absolute_path(&file, &path.key("path"))
        {
            config.path = file;
        }
        config
    }

    pub(super) fn control(&mut self, value: Option<&Value>, path: &YamlPath) -> ControlConfig {
        let mut config = ControlConfig::default();
        if let Some(raw) =
            value.and_then(|v| self.mapping_of::<RawControl>(v, path, &Place::file()))
            && let Some(socket) = raw.socket
            && let Some(socket) = self.absolute_path(&socket, &path.key("socket"))
        {
            config.socket = socket;
        }
        config
    }

    pub(super) fn absolute_path(&mut self, text: &str, path: &YamlPath) -> Option<PathBuf> {
        if text.starts_with('/') {
            Some(PathBuf::from(text))
        } else {
            self.report(
                &Place::file(),
                path,
                Anchor::Value,
                format!("must be an absolute path (got \"{text}\")"),
            );
            None
        }
    }

    pub(super) fn firewall(&mut self, value: Option<&Value>, path: &YamlPath) -> FirewallConfig {
        let mut config = FirewallConfig::default();
        let Some(raw) = value.and_then(|v| self.mapping_of::<RawFirewall>(v, path, &Place::file()))
        else {
            return config;
        };
        config.backend = raw.backend.unwrap_or(config.backend);
        config.target = raw.target.unwrap_or(config.target);
        config.mode = raw.mode.unwrap_or(config.mode);
        config.keep_bans_on_exit = raw.keep_bans_on_exit.unwrap_or(config.keep_bans_on_exit);
        if let Some(prefix) = raw.chain_prefix {
            let valid = prefix.len() <= 16
                && prefix.starts_with(|c: char| c.is_ascii_alphabetic())
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if valid {
                config.chain_prefix = prefix;
            } else {
                self.report(
                    &Place::file(),
                    &path.key("chain_prefix"),
                    Anchor::Value,
                    format!(
                        "must be 1 to 16 letters, digits, `-` or `_`, starting with a letter \
                         (got \"{prefix}\")"
                    ),
                );
            }
        }
        config
    }

    pub(super) fn metrics(&mut self, value: Option<&Value>, path: &YamlPath) -> MetricsConfig {
        let mut config = MetricsConfig::default();
        let Some(raw) = value.and_then(|v| self.mapping_of::<RawMetrics>(v, path, &Place::file()))
        else {
            return config;
        };
        config.enabled = raw.enabled.unwrap_or(config.enabled);
        if let Some(listen) = raw.listen {
            match listen.parse::<SocketAddr>() {
                Ok(address) => config.listen = address,
                Err(_) => self.report(
                    &Place::file(),
                    &path.key("listen"),
                    Anchor::Value,
                    format!(
                        "must be IP:PORT such as 127.0.0.1:9191 or [::1]:9191 (got \"{listen}\")"
                    ),
                ),
            }
        }
        config
    }

    pub(super) fn log(&mut self, value: Option<&Value>, path: &YamlPath) -> LogConfig {
        let mut config = LogConfig::default();
        if let Some(raw) = value.and_then(|v| self.mapping_of::<RawLog>(v, path, &Place::file())) {
            config.format = raw.format.unwrap_or(config.format);
            config.level = raw.level.unwrap_or(config.level);
        }
        config
    }
}
