//! `fleet:` and the jails' `share:` / `share_failures:`.

use serde_yaml::Value;

use super::{Anchor, Place, Validator};
use crate::config::JailConfig;
use crate::config::error::Scope;
use crate::config::positions::YamlPath;
use crate::config::raw::{RawFleet, RawFleetTls};
use crate::config::sections::{
    ClientCertificate, FleetConfig, FleetTls, SecretSource, check_redis_url, host_name,
    is_fleet_word, member_name_from,
};

impl Validator<'_> {
    pub(super) fn fleet(&mut self, value: Option<&Value>, path: &YamlPath) -> Option<FleetConfig> {
        let raw = self.mapping_of::<RawFleet>(value?, path, &Place::file())?;
        let file = Place::file();
        let mut ok = true;
        let redis = match raw.redis {
            Some(url) => match check_redis_url(&url) {
                Ok(()) => Some(url),
                Err(message) => {
                    self.report(&file, &path.key("redis"), Anchor::Value, message);
                    None
                }
            },
            None => {
                self.report(
                    &file,
                    path,
                    Anchor::Key,
                    "needs `redis:`, the server the members share (redis://HOST:6379)",
                );
                None
            }
        };
        let name = match (raw.name, raw.name_env) {
            (Some(_), Some(_)) => {
                self.report(
                    &file,
                    &path.key("name_env"),
                    Anchor::Key,
                    "give the member name in `name` or in `name_env`, not both",
                );
                None
            }
            (Some(name), None) if is_fleet_word(&name) => Some(name),
            (Some(name), None) => {
                self.report(
                    &file,
                    &path.key("name"),
                    Anchor::Value,
                    format!("must be 1 to 64 letters, digits, `.`, `-` or `_` (got \"{name}\")"),
                );
                None
            }
            // Read here rather than at start so that `logjail check` (run with the same
            // environment, as in the chart's pod) reports it with the key that asked for it.
            (None, name_env) => match member_name_from(
                name_env.as_deref(),
                |variable| std::env::var(variable).ok(),
                host_name,
            ) {
                Ok(name) => Some(name),
                Err(error) => {
                    let (key, anchor) = match name_env {
                        Some(_) => (path.key("name_env"), Anchor::Value),
                        None => (path.clone(), Anchor::Key),
                    };
                    self.report(&file, &key, anchor, error.to_string());
                    None
                }
            },
        };
        let password = match (raw.password_file, raw.password_env) {
            (Some(_), Some(_)) => {
                self.report(
                    &file,
                    &path.key("password_env"),
                    Anchor::Key,
                    "give the password in `password_file` or in `password_env`, not both",
                );
                ok = false;
                None
            }
            (Some(file_path), None) => self
                .absolute_path(&file_path, &path.key("password_file"))
                .map(SecretSource::File)
                .or_else(|| {
                    ok = false;
                    None
                }),
            (None, Some(variable)) if variable.is_empty() => {
                self.report(
                    &file,
                    &path.key("password_env"),
                    Anchor::Value,
                    "must name an environment variable",
                );
                ok = false;
                None
            }
            (None, Some(variable)) => Some(SecretSource::Env(variable)),
            (None, None) => None,
        };
        let hmac_key_file = match raw.hmac_key_file {
            Some(text) => {
                let checked = self.absolute_path(&text, &path.key("hmac_key_file"));
                ok &= checked.is_some();
                checked
            }
            None => None,
        };
        let tls = match raw.tls {
            Some(tls) => {
                let checked = self.fleet_tls(tls, redis.as_deref(), &path.key("tls"));
                ok &= checked.is_some();
                checked
            }
            None => None,
        };
        Some(FleetConfig {
            redis: redis?,
            name: name?,
            username: raw.username,
            password,
            hmac_key_file,
            share: raw.share.unwrap_or(true),
            tls,
        })
        .filter(|_| ok)
    }

    /// `fleet.tls`: only with `rediss://` (a CA given for a plain connection would be
    /// silently unused, and the operator believes the link is encrypted); the client
    /// certificate and its key together.
    fn fleet_tls(
        &mut self,
        raw: RawFleetTls,
        redis: Option<&str>,
        path: &YamlPath,
    ) -> Option<FleetTls> {
        let file = Place::file();
        let mut ok = true;
        if let Some(url) = redis
            && !url.starts_with("rediss://")
        {
            let (key, given) = match (&raw.ca_file, &raw.cert_file, &raw.key_file) {
                (Some(_), _, _) => (path.key("ca_file"), "ca_file"),
                (None, Some(_), _) => (path.key("cert_file"), "cert_file"),
                (None, None, Some(_)) => (path.key("key_file"), "key_file"),
                (None, None, None) => (path.clone(), "tls"),
            };
            self.report(
                &file,
                &key,
                Anchor::Key,
                format!("`{given}` is for TLS, which needs `redis: rediss://…` (got \"{url}\")"),
            );
            ok = false;
        }
        let mut absolute = |validator: &mut Self, text: Option<String>, key: &str| match text {
            Some(text) => {
                let checked = validator.absolute_path(&text, &path.key(key));
                ok &= checked.is_some();
                checked
            }
            None => None,
        };
        let ca_file = absolute(self, raw.ca_file, "ca_file");
        let cert_file = absolute(self, raw.cert_file, "cert_file");
        let key_file = absolute(self, raw.key_file, "key_file");
        let client = match (cert_file, key_file) {
            (Some(cert_file), Some(key_file)) => Some(ClientCertificate {
                cert_file,
                key_file,
            }),
            (None, None) => None,
            (Some(_), None) => {
                self.report(
                    &file,
                    &path.key("cert_file"),
                    Anchor::Key,
                    "a client certificate needs its key in `key_file`",
                );
                ok = false;
                None
            }
            (None, Some(_)) => {
                self.report(
                    &file,
                    &path.key("key_file"),
                    Anchor::Key,
                    "a client key needs its certificate in `cert_file`",
                );
                ok = false;
                None
            }
        };
        Some(FleetTls { ca_file, client }).filter(|_| ok)
    }

    /// A jail asking to share when there is no fleet to share with is a mistake worth
    /// stopping for: the user expects the bans to spread.
    pub(super) fn sharing_without_fleet(&mut self, jails: &[JailConfig], path: &YamlPath) {
        for jail in jails {
            let place = Place {
                scope: Scope::Jail(jail.name.clone()),
                depth: 2,
            };
            if jail.share == Some(true) {
                self.report(
                    &place,
                    &path.key(&jail.name).key("share"),
                    Anchor::Key,
                    "`share: true` needs a `fleet:` section to share with".to_string(),
                );
            }
        }
    }

    /// Failures counted fleet-wide make sense only where the ban they lead to spreads: a
    /// member reaching maxretry bans, and the others must learn it. So `share_failures`
    /// needs a fleet and a jail that shares its bans (its own `share:` or `fleet.share`).
    pub(super) fn shared_failures_checked(
        &mut self,
        jails: &[JailConfig],
        fleet: Option<&FleetConfig>,
        path: &YamlPath,
    ) {
        for jail in jails.iter().filter(|jail| jail.share_failures) {
            let place = Place {
                scope: Scope::Jail(jail.name.clone()),
                depth: 2,
            };
            let message = match fleet {
                None => "`share_failures: true` needs a `fleet:` section to count with",
                Some(fleet) if !jail.share.unwrap_or(fleet.share) => {
                    "`share_failures: true` needs the jail's bans shared too (`share: true`): \
                     the member that reaches maxretry bans, and the others learn it from that ban"
                }
                Some(_) => continue,
            };
            self.report(
                &place,
                &path.key(&jail.name).key("share_failures"),
                Anchor::Key,
                message.to_string(),
            );
        }
    }
}
