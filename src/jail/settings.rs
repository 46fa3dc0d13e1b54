//! A jail's tunables (maxretry, findtime, bantime, increments, ignore list) and their validation.

use std::time::Duration;

use crate::duration::BanTime;

use super::ignore::IgnoreList;

/// How many hosts a jail tracks at most in each of its two tiers (hosts with one failure,
/// hosts with more; see [`failures`](super::failures)). At this size a flood of one-off
/// addresses costs about 12 MB, and a flood of hosts failing twice each about 30 MB.
pub const DEFAULT_MAX_TRACKED_HOSTS: usize = 100_000;

/// Everything a [`Jail`](super::Jail) needs to decide; built by the config module.
#[derive(Debug, Clone, PartialEq)]
pub struct JailSettings {
    /// Names the jail in ban records, history look-ups and every error message.
    pub name: String,
    /// Failures within `findtime` that earn a ban; at least 1.
    pub maxretry: u32,
    /// Length of the sliding window failures are counted in.
    pub findtime: Duration,
    /// Base length of a ban, before increments; `Permanent` bans never expire.
    pub bantime: BanTime,
    /// Longer bans for repeat offenders; `None` bans every time for `bantime`.
    pub increment: Option<IncrementSettings>,
    /// Hosts that are never counted nor banned.
    pub ignore: IgnoreList,
    /// Cap on hosts with failures held in memory, per tier (one failure / more), so a flood
    /// of distinct (botnet or IPv6) addresses cannot grow the jail without bound.
    pub max_tracked_hosts: usize,
}

impl JailSettings {
    /// Fail2Ban's defaults: 5 failures in 10 minutes ban for 10 minutes, no increments,
    /// `ignoreself` on, no `ignoreip`.
    pub fn new(name: impl Into<String>) -> Self {
        JailSettings {
            name: name.into(),
            maxretry: 5,
            findtime: Duration::from_secs(600),
            bantime: BanTime::Finite(Duration::from_secs(600)),
            increment: None,
            ignore: IgnoreList::default(),
            max_tracked_hosts: DEFAULT_MAX_TRACKED_HOSTS,
        }
    }

    /// Every problem with these settings, so the config check can report them all at once.
    pub fn problems(&self) -> Vec<SettingsError> {
        let jail = || self.name.clone();
        let mut problems = Vec::new();
        if self.maxretry == 0 {
            problems.push(SettingsError::ZeroMaxretry { jail: jail() });
        }
        if self.bantime == BanTime::Finite(Duration::ZERO) {
            problems.push(SettingsError::ZeroBantime { jail: jail() });
        }
        if self.max_tracked_hosts == 0 {
            problems.push(SettingsError::ZeroMaxTrackedHosts { jail: jail() });
        }
        if let Some(increment) = &self.increment {
            if !(increment.factor.is_finite() && increment.factor > 0.0) {
                problems.push(SettingsError::BadFactor {
                    jail: jail(),
                    factor: increment.factor,
                });
            }
            match &increment.multipliers {
                Some(multipliers) if multipliers.is_empty() => {
                    problems.push(SettingsError::EmptyMultipliers { jail: jail() });
                }
                Some(multipliers) => {
                    if let Some(position) = multipliers.iter().position(|m| *m == 0) {
                        problems.push(SettingsError::ZeroMultiplier {
                            jail: jail(),
                            position,
                        });
                    }
                }
                None => {}
            }
            if increment.maxtime == Some(Duration::ZERO) {
                problems.push(SettingsError::ZeroMaxtime { jail: jail() });
            }
        }
        problems
    }

    /// The first problem, if any; [`Jail::new`](super::Jail::new) refuses invalid settings.
    pub fn validate(&self) -> Result<(), SettingsError> {
        match self.problems().into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }
}

/// Fail2Ban's `bantime.*` options: ban repeat offenders longer each time.
///
/// For a host with `n` previous bans (see [`BanHistory`](super::BanHistory)) the ban lasts
/// `bantime × factor × multipliers[min(n, len-1)]` when `multipliers` is set, otherwise
/// `bantime × factor × 2^min(n, 20)`; then at most `maxtime`; then plus a random
/// `0..=rndtime` seconds. Like Fail2Ban, `factor` scales the multipliers too (its default 1
/// leaves them as written), and the jitter comes after the cap so bans can end anywhere in
/// `maxtime..=maxtime+rndtime` and a botnet cannot predict the exact unban time.
#[derive(Debug, Clone, PartialEq)]
pub struct IncrementSettings {
    /// Switch, so a config can keep the section while turning increments off.
    pub enabled: bool,
    /// Scales the growth; must be finite and > 0.
    pub factor: f64,
    /// Explicit growth steps instead of doubling; must be non-empty when given.
    pub multipliers: Option<Vec<u32>>,
    /// Ceiling on incremented bans, so repeat offenders are not banned for years.
    pub maxtime: Option<Duration>,
    /// Upper bound of the random extra time added to each ban.
    pub rndtime: Option<Duration>,
    /// Count previous bans of the host in every jail, not just this one.
    pub overalljails: bool,
    /// Only bans that started within this long before now count as previous bans; `None`
    /// counts everything the history still holds (the store purges old rows itself, like
    /// Fail2Ban's `dbpurgeage`).
    pub lookback: Option<Duration>,
}

impl Default for IncrementSettings {
    fn default() -> Self {
        IncrementSettings {
            enabled: true,
            factor: 1.0,
            multipliers: None,
            maxtime: None,
            rndtime: None,
            overalljails: false,
            lookback: None,
        }
    }
}

/// A setting a jail cannot run with; each message names the jail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error("jail `{jail}`: maxretry must be at least 1")]
    ZeroMaxretry { jail: String },
    #[error("jail `{jail}`: bantime must be longer than 0s (use -1 for a permanent ban)")]
    ZeroBantime { jail: String },
    #[error("jail `{jail}`: max_tracked_hosts must be at least 1")]
    ZeroMaxTrackedHosts { jail: String },
    #[error("jail `{jail}`: bantime.factor must be a number greater than 0, not {factor}")]
    BadFactor { jail: String, factor: f64 },
    #[error(
        "jail `{jail}`: bantime.multipliers is empty; list at least one (e.g. 1 2 4 8) or remove it"
    )]
    EmptyMultipliers { jail: String },
    #[error("jail `{jail}`: bantime.multipliers entry #{} is 0; multipliers must be at least 1", .position + 1)]
    ZeroMultiplier { jail: String, position: usize },
    #[error("jail `{jail}`: bantime.maxtime must be longer than 0s")]
    ZeroMaxtime { jail: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let settings = JailSettings::new("sshd");
        assert_eq!(settings.validate(), Ok(()));
        assert_eq!(settings.maxretry, 5);
        assert_eq!(settings.max_tracked_hosts, DEFAULT_MAX_TRACKED_HOSTS);
        let with_increment = JailSettings {
            increment: Some(IncrementSettings::default()),
            ..settings
        };
        assert_eq!(with_increment.validate(), Ok(()));
    }

    #[test]
    fn reports_every_problem_naming_the_jail() {
        let settings = JailSettings {
            maxretry: 0,
            bantime: BanTime::Finite(Duration::ZERO),
            max_tracked_hosts: 0,
            increment: Some(IncrementSettings {
                factor: 0.0,
                multipliers: Some(vec![]),
                maxtime: Some(Duration::ZERO),
                ..IncrementSettings::default()
            }),
            ..JailSettings::new("nginx-auth")
        };
        let problems = settings.problems();
        assert_eq!(
            problems,
            vec![
                SettingsError::ZeroMaxretry {
                    jail: "nginx-auth".into()
                },
                SettingsError::ZeroBantime {
                    jail: "nginx-auth".into()
                },
                SettingsError::ZeroMaxTrackedHosts {
                    jail: "nginx-auth".into()
                },
                SettingsError::BadFactor {
                    jail: "nginx-auth".into(),
                    factor: 0.0
                },
                SettingsError::EmptyMultipliers {
                    jail: "nginx-auth".into()
                },
                SettingsError::ZeroMaxtime {
                    jail: "nginx-auth".into()
                },
            ]
        );
        for problem in &problems {
            assert!(
                problem.to_string().starts_with("jail `nginx-auth`: "),
                "{problem}"
            );
        }
        assert_eq!(settings.validate(), Err(problems[0].clone()));
    }

    #[test]
    fn refuses_negative_nan_factor_and_zero_multiplier() {
        for factor in [-1.0, f64::NAN, f64::INFINITY] {
            let settings = JailSettings {
                increment: Some(IncrementSettings {
                    factor,
                    ..IncrementSettings::default()
                }),
                ..JailSettings::new("sshd")
            };
            assert!(matches!(
                settings.validate(),
                Err(SettingsError::BadFactor { .. })
            ));
        }
        let settings = JailSettings {
            increment: Some(IncrementSettings {
                multipliers: Some(vec![1, 0, 4]),
                ..IncrementSettings::default()
            }),
            ..JailSettings::new("sshd")
        };
        let error = settings.validate().unwrap_err();
        assert_eq!(
            error,
            SettingsError::ZeroMultiplier {
                jail: "sshd".into(),
                position: 1
            }
        );
        assert_eq!(
            error.to_string(),
            "jail `sshd`: bantime.multipliers entry #2 is 0; multipliers must be at least 1"
        );
    }

    #[test]
    fn permanent_bantime_is_valid() {
        let settings = JailSettings {
            bantime: BanTime::Permanent,
            ..JailSettings::new("recidive")
        };
        assert_eq!(settings.validate(), Ok(()));
    }
}
