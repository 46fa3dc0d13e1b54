//! Durations as Fail2Ban users write them: `90s`, `10m`, `2h`, `3d`, `1w`, plain seconds, `-1`.

use std::fmt;
use std::time::Duration;

/// How long a ban lasts. Fail2Ban spells "forever" as a negative bantime; we keep it explicit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BanTime {
    Finite(Duration),
    Permanent,
}

impl BanTime {
    /// The finite length, or `None` for a permanent ban.
    pub fn finite(self) -> Option<Duration> {
        match self {
            BanTime::Finite(d) => Some(d),
            BanTime::Permanent => None,
        }
    }
}

impl fmt::Display for BanTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanTime::Finite(d) => f.write_str(&format_duration(*d)),
            BanTime::Permanent => f.write_str("permanent"),
        }
    }
}

/// Why a duration string was refused; the message is meant to be shown as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("`{0}` is not a duration (use e.g. 90s, 10m, 2h, 3d, 1w or plain seconds)")]
    Malformed(String),
    #[error("`{0}` is negative; only -1 (permanent) is allowed here")]
    Negative(String),
    #[error("`{0}` is too large")]
    Overflow(String),
}

/// Parses a duration that must be finite (findtime, maxtime, …).
///
/// Accepts a sum of terms like Fail2Ban does (`1h30m`, `1d 12h`), each a number with an
/// optional unit: `s`, `m`, `h`, `d`, `w` and their long forms. A bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    if trimmed.starts_with('-') {
        return Err(DurationError::Negative(trimmed.to_string()));
    }
    let malformed = || DurationError::Malformed(trimmed.to_string());
    let mut total: u64 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(malformed());
        }
        let number: u64 = rest[..digits_end]
            .parse()
            .map_err(|_| DurationError::Overflow(trimmed.to_string()))?;
        rest = rest[digits_end..].trim_start();
        let unit_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let seconds_per_unit = match rest[..unit_end].to_ascii_lowercase().as_str() {
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3_600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 604_800,
            _ => return Err(malformed()),
        };
        rest = &rest[unit_end..];
        total = number
            .checked_mul(seconds_per_unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| DurationError::Overflow(trimmed.to_string()))?;
    }
    Ok(Duration::from_secs(total))
}

/// Parses a ban time: any finite duration, or `-1` (or any negative number) for permanent,
/// as Fail2Ban reads a negative bantime.
pub fn parse_bantime(text: &str) -> Result<BanTime, DurationError> {
    let trimmed = text.trim();
    if let Some(negative) = trimmed.strip_prefix('-') {
        return if !negative.is_empty() && negative.chars().all(|c| c.is_ascii_digit()) {
            Ok(BanTime::Permanent)
        } else {
            Err(DurationError::Malformed(trimmed.to_string()))
        };
    }
    if matches!(trimmed, "permanent" | "forever") {
        return Ok(BanTime::Permanent);
    }
    parse_duration(trimmed).map(BanTime::Finite)
}

/// Formats a duration in the largest units that keep it exact: `2h`, `1d12h`, `90s` → `1m30s`.
pub fn format_duration(duration: Duration) -> String {
    let mut seconds = duration.as_secs();
    if seconds == 0 {
        return "0s".to_string();
    }
    // Weeks only when exact: "30d" reads better than "4w2d".
    if seconds.is_multiple_of(604_800) {
        return format!("{}w", seconds / 604_800);
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if seconds >= size {
            out.push_str(&format!("{}{}", seconds / size, unit));
            seconds %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_plain_seconds() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7_200));
        assert_eq!(parse_duration("3d").unwrap(), Duration::from_secs(259_200));
        assert_eq!(parse_duration("1w").unwrap(), Duration::from_secs(604_800));
        assert_eq!(
            parse_duration("259200").unwrap(),
            Duration::from_secs(259_200)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(
            parse_duration("1d 12h").unwrap(),
            Duration::from_secs(129_600)
        );
        assert_eq!(
            parse_duration("5 minutes").unwrap(),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn refuses_garbage_and_negatives() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("10x"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_duration("m"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_duration("-5"),
            Err(DurationError::Negative(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_duration("9999999999999999w"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn bantime_minus_one_is_permanent() {
        assert_eq!(parse_bantime("-1").unwrap(), BanTime::Permanent);
        assert_eq!(parse_bantime("permanent").unwrap(), BanTime::Permanent);
        assert_eq!(
            parse_bantime("30d").unwrap(),
            BanTime::Finite(Duration::from_secs(2_592_000))
        );
        assert!(parse_bantime("-x").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for text in ["90s", "10m", "2h", "3d", "1w", "1d12h"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(parsed)).unwrap(), parsed);
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(format_duration(Duration::from_secs(14 * 86_400)), "2w");
    }
}
