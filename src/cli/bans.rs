//! `logjail regex --bans`: replay a log through a jail in the log's own time and list the bans
//! it would make, a dry run for tuning maxretry/findtime/bantime before touching a firewall.

use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::duration::{BanTime, format_duration};
use crate::jail::{BanHistory, Decision, Jail, JailSettings, MemoryBanHistory, SettingsError};

use super::regex::ReplayedFailure;

/// A ban the replay made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedBan {
    pub host: IpAddr,
    pub time: DateTime<Utc>,
    pub failures: u32,
    pub bantime: BanTime,
    /// Which ban of this host it is (increments make later ones longer).
    pub ban_count: u32,
    /// Input line number of the failure that triggered the ban.
    pub line_number: u64,
}

/// Feeds failures, in log order, to one jail; the jail's clock is the log's time.
pub struct Replay {
    jail: Jail,
    history: MemoryBanHistory,
    bans: Vec<ReplayedBan>,
    /// The latest time seen: a failure dated earlier (lines out of order) is judged at this
    /// time, as the daemon would judge it on arrival.
    clock: Option<DateTime<Utc>>,
}

impl Replay {
    pub fn new(settings: JailSettings) -> Result<Replay, SettingsError> {
        Ok(Replay {
            jail: Jail::new(settings)?,
            history: MemoryBanHistory::new(),
            bans: Vec::new(),
            clock: None,
        })
    }

    pub fn settings(&self) -> &JailSettings {
        self.jail.settings()
    }

    pub fn observe(&mut self, failure: &ReplayedFailure<'_>) {
        let now = self.clock.map_or(failure.time, |c| c.max(failure.time));
        self.clock = Some(now);
        // Bans that ended by now free their hosts to be counted (and banned) again.
        self.jail.expire(now);
        let history: &mut dyn BanHistory = &mut self.history;
        let decision = self.jail.on_failure(
            failure.host,
            failure.time,
            failure.line,
            now,
            history,
            &mut rand::rng(),
        );
        if let Decision::Ban(order) = decision {
            self.bans.push(ReplayedBan {
                host: order.host,
                time: order.start,
                failures: order.failures,
                bantime: order.bantime,
                ban_count: order.ban_count,
                line_number: failure.line_number,
            });
        }
    }

    pub fn bans(&self) -> &[ReplayedBan] {
        &self.bans
    }

    /// The bans as text, for the end of `logjail regex --bans`.
    pub fn report(&self) -> String {
        let settings = self.jail.settings();
        let findtime = format_duration(settings.findtime);
        let mut out = format!(
            "\nBans (maxretry {}, findtime {findtime}, bantime {}):\n",
            settings.maxretry, settings.bantime
        );
        for ban in &self.bans {
            out.push_str(&format!(
                "|  {}  {:<39}  failures {:<3} bantime {:<10} ban #{} (line {})\n",
                ban.time.to_rfc3339_opts(SecondsFormat::Secs, true),
                ban.host,
                ban.failures,
                ban.bantime.to_string(),
                ban.ban_count,
                ban.line_number
            ));
        }
        let mut hosts: Vec<IpAddr> = self.bans.iter().map(|b| b.host).collect();
        hosts.sort_unstable();
        hosts.dedup();
        out.push_str(&format!(
            "`- {} bans of {} hosts\n",
            self.bans.len(),
            hosts.len()
        ));
        out
    }

    /// One JSON object per ban, for `--bans --json`.
    pub fn json_lines(&self) -> Vec<String> {
        self.bans
            .iter()
            .map(|ban| {
                serde_json::json!({
                    "host": ban.host.to_string(),
                    "time": ban.time.to_rfc3339_opts(SecondsFormat::Millis, true),
                    "failures": ban.failures,
                    "bantime": ban.bantime.finite().map(|d| d.as_secs()),
                    "permanent": ban.bantime == BanTime::Permanent,
                    "ban_count": ban.ban_count,
                    "line": ban.line_number,
                })
                .to_string()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    fn failure(line_number: u64, host: &str, seconds: i64) -> (u64, IpAddr, DateTime<Utc>) {
        (
            line_number,
            host.parse().unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 26, 7, 0, 0).unwrap()
                + chrono::Duration::seconds(seconds),
        )
    }

    fn replay(settings: JailSettings, failures: &[(u64, IpAddr, DateTime<Utc>)]) -> Replay {
        let mut replay = Replay::new(settings).unwrap();
        for (line_number, host, time) in failures {
            replay.observe(&ReplayedFailure {
                line_number: *line_number,
                host: *host,
                time: *time,
                line: "x",
            });
        }
        replay
    }

    #[test]
    fn bans_at_maxretry_within_findtime_in_log_time() {
        let mut settings = JailSettings::new("t");
        settings.maxretry = 3;
        settings.findtime = Duration::from_secs(60);
        settings.bantime = BanTime::Finite(Duration::from_secs(600));
        let failures = [
            failure(1, "1.2.3.4", 0),
            // 5.6.7.8 is too slow: its failures never fit three in one minute.
            failure(2, "5.6.7.8", 10),
            failure(3, "1.2.3.4", 30),
            failure(4, "1.2.3.4", 59),
            failure(5, "5.6.7.8", 80),
            // Still banned: not counted.
            failure(6, "1.2.3.4", 100),
            failure(7, "5.6.7.8", 150),
            // The ban ended at 659: counting starts again.
            failure(8, "1.2.3.4", 700),
            failure(9, "1.2.3.4", 701),
            failure(10, "1.2.3.4", 702),
        ];
        let replay = replay(settings, &failures);
        let bans = replay.bans();
        assert_eq!(bans.len(), 2);
        assert_eq!(bans[0].host, "1.2.3.4".parse::<IpAddr>().unwrap());
        assert_eq!(bans[0].line_number, 4);
        assert_eq!(bans[0].time, failures[3].2);
        assert_eq!(bans[1].line_number, 10);
        assert_eq!(bans[1].ban_count, 2);
        assert!(replay.report().contains("2 bans of 1 hosts"));
        assert_eq!(replay.json_lines().len(), 2);
    }
}
