//! Timestamps in log lines: leading stamps to strip, inline stamps to read, and `datepattern`.
//!
//! Log timestamps are parsed by hand rather than by a generic strptime because this runs on every
//! line: a `Nov 26 07:00:01` prefix costs a few comparisons here. Stamps without a zone are local
//! time (what syslog writes); stamps without a year take the year that puts them closest to, and
//! not more than a day after, the reference time.

use chrono::{DateTime, Datelike, FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};
use regex::Regex;

/// Which kind of leading stamp was found; syslog-like stamps are followed by a host and a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampKind {
    /// `Nov 26 07:00:01` (BSD syslog, RFC 3164).
    Bsd,
    /// `2026-11-26T07:00:01.123+00:00` (RFC 3339, rsyslog's high-precision format, journald).
    Rfc3339,
    /// Any other known format (`2026-11-26 07:00:01,123`, `[Thu Nov 26 07:00:01 2026]`, …).
    Other,
}

/// A timestamp found at the start of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeadingStamp {
    pub time: DateTime<Utc>,
    /// Bytes of the message the stamp (and the blank after it) takes up.
    pub len: usize,
    pub kind: StampKind,
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
const WEEKDAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];

fn month_number(name: &[u8]) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(name))
        .map(|i| i as u32 + 1)
}

fn is_weekday(name: &[u8]) -> bool {
    WEEKDAYS.iter().any(|d| d.eq_ignore_ascii_case(name))
}

/// A tiny cursor over bytes; every parser below either consumes what it recognises or fails.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Exactly `count` ASCII digits.
    fn digits(&mut self, count: usize) -> Option<u32> {
        let slice = self.bytes.get(self.pos..self.pos + count)?;
        let mut value = 0u32;
        for &b in slice {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(b - b'0');
        }
        self.pos += count;
        Some(value)
    }

    /// One or two digits, optionally preceded by a space (`Nov  6`).
    fn day(&mut self) -> Option<u32> {
        if self.eat(b' ') {
            return self.digits(1);
        }
        let first = self.digits(1)?;
        match self.peek() {
            Some(b) if b.is_ascii_digit() => {
                self.pos += 1;
                Some(first * 10 + u32::from(b - b'0'))
            }
            _ => Some(first),
        }
    }

    fn word3(&mut self) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.pos..self.pos + 3)?;
        if slice.iter().all(u8::is_ascii_alphabetic) {
            self.pos += 3;
            Some(slice)
        } else {
            None
        }
    }

    /// `HH:MM:SS`
    fn clock(&mut self) -> Option<(u32, u32, u32)> {
        let hour = self.digits(2)?;
        if !self.eat(b':') {
            return None;
        }
        let minute = self.digits(2)?;
        if !self.eat(b':') {
            return None;
        }
        let second = self.digits(2)?;
        Some((hour, minute, second))
    }

    /// `.123456` or `,123` → nanoseconds.
    fn fraction(&mut self) -> u32 {
        let Some(sep) = self.peek() else { return 0 };
        if sep != b'.' && sep != b',' {
            return 0;
        }
        let start = self.pos + 1;
        let mut end = start;
        while end < self.bytes.len() && self.bytes[end].is_ascii_digit() {
            end += 1;
        }
        if end == start {
            return 0;
        }
        self.pos = end;
        let mut nanos = 0u32;
        for (i, &b) in self.bytes[start..end].iter().take(9).enumerate() {
            nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
        }
        nanos
    }

    /// `Z`, `+01:00`, `+0100`, ` +0000`; `None` when absent (local time).
    fn zone(&mut self) -> Option<FixedOffset> {
        if self.eat(b'Z') || self.eat(b'z') {
            return FixedOffset::east_opt(0);
        }
        let start = self.pos;
        let sign = match self.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return None,
        };
        self.pos += 1;
        let parsed = (|| {
            let hours = self.digits(2)?;
            self.eat(b':');
            let minutes = self.digits(2)?;
            FixedOffset::east_opt(sign * (hours as i32 * 3600 + minutes as i32 * 60))
        })();
        if parsed.is_none() {
            self.pos = start;
        }
        parsed
    }

    fn rest_starts_blank_or_end(&self) -> bool {
        matches!(self.peek(), None | Some(b' ') | Some(b'\t'))
    }
}

/// Turns date parts into UTC, with local time when no zone was written.
fn to_utc(
    date: NaiveDate,
    (hour, minute, second): (u32, u32, u32),
    nanos: u32,
    zone: Option<FixedOffset>,
) -> Option<DateTime<Utc>> {
    let naive = date.and_hms_nano_opt(hour, minute, second, nanos)?;
    match zone {
        Some(offset) => offset
            .from_local_datetime(&naive)
            .single()
            .map(|t| t.with_timezone(&Utc)),
        None => local_to_utc(naive),
    }
}

fn local_to_utc(naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    LOCAL_HOUR.with(|slot| {
        let mut remembered = slot.get();
        let time = zone_to_utc(&Local, naive, &mut remembered);
        slot.set(remembered);
        time
    })
}

/// The offset the local zone has during one whole wall-clock hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HourOffset {
    /// The hour: its day and its hour of day, in local wall-clock time.
    day: NaiveDate,
    hour: u32,
    offset: FixedOffset,
    /// Conversions answered from this entry so far.
    uses: u32,
}

/// After this many conversions an hour's offset is looked up again, so that a change of the
/// system zone (a new TZ, an edited /etc/localtime) is picked up while one hour lasts, as chrono
/// picks it up.
const OFFSET_REUSES: u32 = 100_000;

thread_local! {
    /// Asking chrono for the local offset on every line (zone rules, a TZ and /etc/localtime
    /// check, a clock read) costs more than parsing the whole stamp; log lines come in time
    /// order, so the offset of the hour being read is remembered.
    static LOCAL_HOUR: std::cell::Cell<Option<HourOffset>> = const { std::cell::Cell::new(None) };
}

/// Wall-clock time in `zone` to UTC, through the remembered hour when it applies. Only an hour
/// with one unambiguous offset from its first to its last nanosecond is remembered, so times in
/// or near a DST gap or fold always go through the zone's rules.
fn zone_to_utc<Tz: TimeZone>(
    zone: &Tz,
    naive: NaiveDateTime,
    remembered: &mut Option<HourOffset>,
) -> Option<DateTime<Utc>> {
    use chrono::{LocalResult, Offset, Timelike};
    let (day, hour_of_day) = (naive.date(), naive.hour());
    if let Some(entry) = remembered.as_mut()
        && entry.day == day
        && entry.hour == hour_of_day
        && entry.uses < OFFSET_REUSES
    {
        entry.uses += 1;
        return naive
            .checked_sub_offset(entry.offset)
            .map(|utc| Utc.from_utc_datetime(&utc));
    }
    // At a DST fold, take the earlier instant: the same choice syslog readers make.
    let time = zone
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc));
    let hour = day.and_hms_opt(hour_of_day, 0, 0)?;
    let last = hour + chrono::Duration::nanoseconds(3_600_000_000_000 - 1);
    *remembered = match (
        zone.offset_from_local_datetime(&hour),
        zone.offset_from_local_datetime(&last),
    ) {
        (LocalResult::Single(first), LocalResult::Single(end)) if first.fix() == end.fix() => {
            Some(HourOffset {
                day,
                hour: hour_of_day,
                offset: first.fix(),
                uses: 0,
            })
        }
        _ => None,
    };
    time
}

/// The year for a stamp that has none: the one that puts it at most a day after `reference`.
fn infer_year(month: u32, day: u32, reference: DateTime<Utc>) -> Option<NaiveDate> {
    let year = reference.year();
    let this_year = NaiveDate::from_ymd_opt(year, month, day);
    let limit = reference.date_naive() + chrono::Duration::days(1);
    match this_year {
        Some(date) if date <= limit => Some(date),
        // Feb 29 of a year that has none, or a date in the future: it was last year's.
        _ => NaiveDate::from_ymd_opt(year - 1, month, day)
            .or_else(|| NaiveDate::from_ymd_opt(year, month, day)),
    }
}

/// `Nov 26 07:00:01[.frac][ 2026]`, or `Nov 26 2026 07:00:01` (macOS's syslog, which
/// Fail2Ban's detection reads too).
fn parse_bsd(cursor: &mut Cursor<'_>, reference: DateTime<Utc>) -> Option<DateTime<Utc>> {
    parse_bsd_in(cursor, reference, None)
}

/// [`parse_bsd`] in `zone` (local time when `None`).
fn parse_bsd_in(
    cursor: &mut Cursor<'_>,
    reference: DateTime<Utc>,
    zone: Option<FixedOffset>,
) -> Option<DateTime<Utc>> {
    let month = month_number(cursor.word3()?)?;
    if !cursor.eat(b' ') {
        return None;
    }
    let day = cursor.day()?;
    if !cursor.eat(b' ') {
        return None;
    }
    let before_year = cursor.pos;
    let year_first = match cursor.digits(4) {
        Some(year) if cursor.eat(b' ') => Some(year),
        _ => {
            cursor.pos = before_year;
            None
        }
    };
    let clock = cursor.clock()?;
    if let Some(year) = year_first {
        let nanos = cursor.fraction();
        let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
        return to_utc(date, clock, nanos, zone);
    }
    let nanos = cursor.fraction();
    // Some syslog daemons append the year: `Nov 26 07:00:01 2026 host …`.
    let save = cursor.pos;
    let year = if cursor.eat(b' ') {
        match cursor.digits(4) {
            Some(y) if cursor.rest_starts_blank_or_end() => Some(y),
            _ => {
                cursor.pos = save;
                None
            }
        }
    } else {
        None
    };
    let date = match year {
        Some(y) => NaiveDate::from_ymd_opt(y as i32, month, day)?,
        None => infer_year(month, day, reference)?,
    };
    to_utc(date, clock, nanos, zone)
}

/// `2026-11-26T07:00:01[.frac][zone]`, also with a blank instead of `T`, or `/` or `.` between
/// date parts (stunnel's `2011.11.21 14:29:16`, which Fail2Ban's detection reads too).
fn parse_iso(cursor: &mut Cursor<'_>) -> Option<(DateTime<Utc>, bool)> {
    let year = cursor.digits(4)?;
    let separator = cursor.peek()?;
    if !matches!(separator, b'-' | b'/' | b'.') {
        return None;
    }
    cursor.pos += 1;
    let month = cursor.digits(2)?;
    if !cursor.eat(separator) {
        return None;
    }
    let day = cursor.digits(2)?;
    let with_t = cursor.eat(b'T');
    if !with_t && !cursor.eat(b' ') {
        return None;
    }
    let clock = cursor.clock()?;
    let nanos = cursor.fraction();
    let zone = cursor.zone();
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    Some((
        to_utc(date, clock, nanos, zone)?,
        with_t && separator == b'-',
    ))
}

/// `Thu Nov 26 07:00:01[.frac] 2026` (Apache error log, vsftpd, ctime).
fn parse_ctime(cursor: &mut Cursor<'_>) -> Option<DateTime<Utc>> {
    if !is_weekday(cursor.word3()?) || !cursor.eat(b' ') {
        return None;
    }
    let month = month_number(cursor.word3()?)?;
    if !cursor.eat(b' ') {
        return None;
    }
    let day = cursor.day()?;
    if !cursor.eat(b' ') {
        return None;
    }
    let clock = cursor.clock()?;
    let nanos = cursor.fraction();
    if !cursor.eat(b' ') {
        return None;
    }
    let year = cursor.digits(4)?;
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    to_utc(date, clock, nanos, None)
}

/// `26/Nov/2026:07:00:01 +0000` (Common Log Format).
fn parse_clf(cursor: &mut Cursor<'_>) -> Option<DateTime<Utc>> {
    let day = cursor.digits(2)?;
    if !cursor.eat(b'/') {
        return None;
    }
    let month = month_number(cursor.word3()?)?;
    if !cursor.eat(b'/') {
        return None;
    }
    let year = cursor.digits(4)?;
    if !cursor.eat(b':') {
        return None;
    }
    let clock = cursor.clock()?;
    let nanos = cursor.fraction();
    cursor.eat(b' ');
    let zone = cursor.zone();
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    to_utc(date, clock, nanos, zone)
}

fn parse_any(
    cursor: &mut Cursor<'_>,
    reference: DateTime<Utc>,
) -> Option<(DateTime<Utc>, StampKind)> {
    let start = cursor.pos;
    let first = cursor.peek()?;
    if first.is_ascii_digit() {
        if let Some((time, rfc3339)) = parse_iso(cursor) {
            let kind = if rfc3339 {
                StampKind::Rfc3339
            } else {
                StampKind::Other
            };
            return Some((time, kind));
        }
        cursor.pos = start;
        return parse_clf(cursor).map(|t| (t, StampKind::Other));
    }
    if first.is_ascii_alphabetic() {
        if let Some(time) = parse_bsd(cursor, reference) {
            return Some((time, StampKind::Bsd));
        }
        cursor.pos = start;
        return parse_ctime(cursor).map(|t| (t, StampKind::Other));
    }
    None
}

/// Recognises a timestamp at the very start of `text` (optionally in brackets) and says how long
/// it is, including the blanks after it. Only whole stamps followed by a blank count, so a
/// message that merely starts with digits is left alone.
pub fn leading_stamp(text: &str, reference: DateTime<Utc>) -> Option<LeadingStamp> {
    let bytes = text.as_bytes();
    let key = bytes
        .get(..SAME_STAMP_KEY)
        .and_then(|k| <[u8; SAME_STAMP_KEY]>::try_from(k).ok());
    if let Some(key) = key
        && let Some(last) = LAST_BSD_STAMP.get()
        && last.key == key
        && last.reference == reference
    {
        return Some(LeadingStamp {
            time: last.time,
            len: skip_stamp_blanks(bytes, BSD_STAMP_LEN),
            kind: StampKind::Bsd,
        });
    }
    let (stamp, end) = parse_leading_stamp(text, reference)?;
    // Remember a plain `Mmm dd hh:mm:ss` stamp: its parse read nothing past the key (a year
    // would have been in bytes 16 to 19, its end checked at byte 20).
    if let Some(key) = key
        && stamp.kind == StampKind::Bsd
        && end == BSD_STAMP_LEN
    {
        LAST_BSD_STAMP.set(Some(SameStamp {
            key,
            reference,
            time: stamp.time,
        }));
    }
    Some(stamp)
}

/// Length of `Nov 26 07:00:01`.
const BSD_STAMP_LEN: usize = 15;
/// Bytes a plain BSD stamp's parse looks at: the stamp, and the blank and four digits of a
/// possible year with the byte after them.
const SAME_STAMP_KEY: usize = 21;

/// The last plain BSD stamp parsed, by the bytes that decided it.
#[derive(Debug, Clone, Copy)]
struct SameStamp {
    key: [u8; SAME_STAMP_KEY],
    reference: DateTime<Utc>,
    time: DateTime<Utc>,
}

thread_local! {
    /// Consecutive syslog lines mostly share their second, host and the start of their tag: a
    /// line whose first bytes and reference time equal the previous stamp's gets its time again
    /// without the date arithmetic.
    static LAST_BSD_STAMP: std::cell::Cell<Option<SameStamp>> = const { std::cell::Cell::new(None) };
}

fn skip_stamp_blanks(bytes: &[u8], mut len: usize) -> usize {
    while len < bytes.len() && (bytes[len] == b' ' || bytes[len] == b'\t') {
        len += 1;
    }
    len
}

/// [`leading_stamp`] without the memory of the last stamp; also returns where the stamp itself
/// ends (before the blanks).
fn parse_leading_stamp(text: &str, reference: DateTime<Utc>) -> Option<(LeadingStamp, usize)> {
    let bytes = text.as_bytes();
    let mut cursor = Cursor::new(bytes);
    let bracketed = cursor.eat(b'[');
    let (time, mut kind) = parse_any(&mut cursor, reference)?;
    if bracketed {
        if !cursor.eat(b']') {
            return None;
        }
        // A bracketed stamp is never followed by a syslog host and tag.
        kind = StampKind::Other;
    } else if !cursor.rest_starts_blank_or_end() {
        return None;
    }
    let end = cursor.pos;
    let len = skip_stamp_blanks(bytes, end);
    Some((LeadingStamp { time, len, kind }, end))
}

/// Finds a timestamp inside a message (an access log's `[26/Nov/2026:07:00:01 +0000]`, an
/// ISO stamp after a prefix). Used only for the time; the text is left as it is.
pub fn inline_time(text: &str, reference: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    for (index, &byte) in bytes.iter().enumerate() {
        let candidate = match byte {
            b'[' => index + 1,
            b'0'..=b'9' if index == 0 || !bytes[index - 1].is_ascii_alphanumeric() => index,
            _ => continue,
        };
        if candidate >= bytes.len() || !bytes[candidate].is_ascii_alphanumeric() {
            continue;
        }
        let mut cursor = Cursor::new(bytes);
        cursor.pos = candidate;
        if let Some((time, _)) = parse_any(&mut cursor, reference) {
            return Some(time);
        }
    }
    None
}

/// Finds the first timestamp in a line and where it is, the way Fail2Ban's default date
/// detection does for its filter files (which are written against the line with the date cut
/// out): anywhere in the line, or only at its start when `anchored` (Fail2Ban's `{^LN-BEG}`).
/// A bracketed stamp's range leaves the brackets out.
pub fn find_stamp(
    text: &str,
    reference: DateTime<Utc>,
    anchored: bool,
) -> Option<(DateTime<Utc>, std::ops::Range<usize>)> {
    let bytes = text.as_bytes();
    for (index, &byte) in bytes.iter().enumerate() {
        if anchored && index > 0 {
            break;
        }
        let candidate = match byte {
            b'[' => index + 1,
            b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z'
                if index == 0 || !bytes[index - 1].is_ascii_alphanumeric() =>
            {
                index
            }
            _ => continue,
        };
        if candidate >= bytes.len() || !bytes[candidate].is_ascii_alphanumeric() {
            continue;
        }
        let mut cursor = Cursor::new(bytes);
        cursor.pos = candidate;
        let parsed = parse_any(&mut cursor, reference)
            .map(|(time, _)| time)
            .or_else(|| {
                cursor.pos = candidate;
                parse_day_month_year(&mut cursor)
            })
            .or_else(|| {
                cursor.pos = candidate;
                parse_zone_first(&mut cursor, reference)
            });
        if let Some(time) = parsed
            && bytes
                .get(cursor.pos)
                .is_none_or(|next| !next.is_ascii_alphanumeric())
        {
            return Some((time, candidate..cursor.pos));
        }
    }
    None
}

/// Zone abbreviations Fail2Ban's date detection knows, by their fixed offset in minutes (no
/// daylight-saving switch: `CET` is always +01:00, `CEST` +02:00).
const ZONE_OFFSETS: &[(i32, &[&str])] = &[
    (-660, &["NUT", "SST"]),
    (-600, &["CKT", "HAST", "HST", "TAHT", "TKT"]),
    (-540, &["AKST", "GAMT", "GIT", "HADT", "HNY"]),
    (-480, &["AKDT", "CIST", "HAY", "HNP", "PST"]),
    (-420, &["HAP", "HNR", "MST", "PDT"]),
    (-360, &["CST", "EAST", "GALT", "HAR", "HNC", "MDT"]),
    (
        -300,
        &["CDT", "COT", "EASST", "ECT", "EST", "HAC", "HNE", "PET"],
    ),
    (-270, &["HLV", "VET"]),
    (
        -240,
        &[
            "AST", "BOT", "CLT", "COST", "EDT", "FKT", "GYT", "HAE", "HNA", "PYT",
        ],
    ),
    (-210, &["HNT", "NST"]),
    (
        -180,
        &[
            "ADT", "ART", "BRT", "CLST", "FKST", "GFT", "HAA", "PMST", "PYST", "SRT", "UYT", "WGT",
        ],
    ),
    (-150, &["HAT", "NDT"]),
    (-120, &["BRST", "FNT", "PMDT", "UYST", "WGST"]),
    (-60, &["AZOT", "CVT", "EGT"]),
    (0, &["EGST", "GMT", "UTC", "WET"]),
    (60, &["CET", "DFT", "WAT", "WEDT", "WEST"]),
    (120, &["CAT", "CEDT", "CEST", "EET", "SAST", "WAST"]),
    (180, &["EAT", "EEDT", "EEST", "IDT", "MSK"]),
    (210, &["IRST"]),
    (
        240,
        &[
            "AMT", "AZT", "GET", "GST", "KUYT", "MSD", "MUT", "RET", "SAMT", "SCT",
        ],
    ),
    (270, &["AFT", "IRDT"]),
    (
        300,
        &[
            "AMST", "AQTT", "AZST", "HMT", "MAWT", "MVT", "PKT", "TFT", "TJT", "TMT", "UZT", "YEKT",
        ],
    ),
    (330, &["SLT"]),
    (345, &["NPT"]),
    (
        360,
        &["ALMT", "BIOT", "BTT", "IOT", "KGT", "NOVT", "OMST", "YEKST"],
    ),
    (390, &["CCT", "MMT"]),
    (
        420,
        &[
            "CXT", "DAVT", "HOVT", "ICT", "KRAT", "NOVST", "OMSST", "THA", "WIB",
        ],
    ),
    (
        480,
        &[
            "ACT", "AWST", "BDT", "BNT", "CAST", "HKT", "IRKT", "KRAST", "MYT", "PHT", "SGT",
            "ULAT", "WITA", "WST",
        ],
    ),
    (
        540,
        &[
            "AWDT", "IRKST", "JST", "KST", "PWT", "TLT", "WDT", "WIT", "YAKT",
        ],
    ),
    (570, &["ACST"]),
    (600, &["AEST", "ChST", "PGT", "VLAT", "YAKST", "YAPT"]),
    (630, &["ACDT", "LHST"]),
    (
        660,
        &["AEDT", "LHDT", "MAGT", "NCT", "PONT", "SBT", "VLAST", "VUT"],
    ),
    (690, &["NFT"]),
    (
        720,
        &[
            "ANAST", "ANAT", "FJT", "GILT", "MAGST", "MHT", "NZST", "PETST", "PETT", "TVT", "WFT",
        ],
    ),
    (780, &["FJST", "NZDT"]),
];

/// A zone abbreviation and a blank before a BSD stamp (monit's `[PDT Apr 16 21:05:29]`), as
/// Fail2Ban's default detection reads it: the stamp in that zone's fixed offset.
fn parse_zone_first(cursor: &mut Cursor<'_>, reference: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let start = cursor.pos;
    let name_len = cursor.bytes[start..]
        .iter()
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    let name = std::str::from_utf8(&cursor.bytes[start..start + name_len]).ok()?;
    let &(minutes, _) = ZONE_OFFSETS
        .iter()
        .find(|(_, names)| names.contains(&name))?;
    cursor.pos = start + name_len;
    if !cursor.eat(b' ') {
        return None;
    }
    let zone = FixedOffset::east_opt(minutes * 60)?;
    parse_bsd_in(cursor, reference, Some(zone))
}

/// `22-Jan-2013 22:28:21 +0200`, `17/Jun/2011 17:00:45`, `11-06-2013 02:09:40`: day first,
/// which Fail2Ban's default detection knows and the envelope does not guess at.
fn parse_day_month_year(cursor: &mut Cursor<'_>) -> Option<DateTime<Utc>> {
    let day = cursor.day()?;
    let separator = cursor.peek()?;
    if separator != b'-' && separator != b'/' {
        return None;
    }
    cursor.pos += 1;
    let (month, named) = match cursor.word3() {
        Some(name) => (month_number(name)?, true),
        None => (cursor.digits(2)?, false),
    };
    if !cursor.eat(separator) {
        return None;
    }
    let year = cursor.digits(4)?;
    if !cursor.eat(b' ') && !cursor.eat(b':') {
        return None;
    }
    let clock = cursor.clock()?;
    let nanos = cursor.fraction();
    let before_zone = cursor.pos;
    // Fail2Ban's template reads a zone after a named month only (`22-Jan-2013 22:28:21
    // +0200`); after `11-06-2013 02:09:40` it is left to the filter.
    let zone = if named && cursor.eat(b' ') {
        cursor.zone()
    } else {
        None
    };
    if zone.is_none() {
        cursor.pos = before_zone;
    }
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    to_utc(date, clock, nanos, zone)
}

/// One line of a Fail2Ban `datepattern`, as logjail finds and cuts that date.
#[derive(Debug, Clone)]
pub enum Fail2BanDate {
    /// A strftime format (`%b-%d-%Exy %H:%M:%S`).
    Format(DatePattern),
    /// A regex with `%` directives in it (`%d/%b[^/]*/%Y:%H:%M:%S %z`).
    Regex(Box<RegexDate>),
    /// Fail2Ban's default detection (`{^LN-BEG}` alone, or no datepattern), inside
    /// `around` when the pattern is `BEFORE{DATE}AFTER`.
    Default {
        anchored: bool,
        prefix: Option<Box<AroundDate>>,
    },
    /// Seconds since 1970 (`Epoch`), bare or in brackets.
    Epoch { anchored: bool },
    /// daemontools' `@4000…` stamps (`TAI64N`).
    Tai64n { anchored: bool },
}

impl Fail2BanDate {
    /// Reads one datepattern line; `None` when logjail cannot express it (the caller falls
    /// back to the default detection and says so).
    pub fn new(line: &str) -> Option<Fail2BanDate> {
        let line = line.trim();
        let (anchored, body) = if let Some(rest) = line.strip_prefix("{^LN-BEG}") {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix('^') {
            (true, rest)
        } else {
            (false, line)
        };
        if body.is_empty() || body == "{DATE}" {
            return Some(Fail2BanDate::Default {
                anchored,
                prefix: None,
            });
        }
        if body.eq_ignore_ascii_case("epoch") || body.eq_ignore_ascii_case("lepoch") {
            return Some(Fail2BanDate::Epoch { anchored });
        }
        if body.eq_ignore_ascii_case("tai64n") {
            return Some(Fail2BanDate::Tai64n { anchored });
        }
        if let Some((before, after)) = body.split_once("{DATE}") {
            return Some(Fail2BanDate::Default {
                anchored: true,
                prefix: Some(Box::new(AroundDate::new(before, after)?)),
            });
        }
        // Fail2Ban's own directives and the regex escapes its formats carry.
        let format = body
            .replace("%ExY", "%Y")
            .replace("%Exy", "%y")
            .replace("%Exb", "%b")
            .replace("%Exd", "%d")
            .replace("%Exm", "%m")
            .replace("%k", "%H")
            .replace("\\[", "[")
            .replace("\\]", "]")
            .replace("\\.", ".");
        if format.contains(['(', '?', '\\', '*', '+', '[']) {
            // Fail2Ban's formats are regexes: what is not a directive stays one.
            let regex = body
                .replace("%ExY", "%Y")
                .replace("%Exy", "%y")
                .replace("%Exb", "%b")
                .replace("%Exd", "%d")
                .replace("%Exm", "%m")
                .replace("%k", "%H");
            return RegexDate::new(&regex, anchored)
                .map(|date| Fail2BanDate::Regex(Box::new(date)));
        }
        let anchor = if anchored { "^" } else { "" };
        // Fail2Ban reads a time without a date (guacamole's `^%H:%M:%S.%f`) as today's.
        DatePattern::build(&format!("{anchor}{format}"), true)
            .ok()
            .map(Fail2BanDate::Format)
    }

    /// The date's time and where it is in `line`.
    pub fn find(
        &self,
        line: &str,
        reference: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, std::ops::Range<usize>)> {
        match self {
            Fail2BanDate::Format(pattern) => pattern.find(line, reference),
            Fail2BanDate::Regex(date) => date.find(line, reference),
            Fail2BanDate::Default {
                anchored,
                prefix: None,
            } => find_stamp(line, reference, *anchored),
            Fail2BanDate::Default {
                prefix: Some(around),
                ..
            } => around.find(line, reference),
            Fail2BanDate::Epoch { anchored } => find_epoch(line, *anchored),
            Fail2BanDate::Tai64n { anchored } => find_tai64n(line, *anchored),
        }
    }
}

/// A Fail2Ban datepattern written as a regex with `%` directives, read by fields.
///
/// Each directive becomes a named group; the date is put together from what they captured. As
/// in Fail2Ban, the cut is the pattern's first group when it has a plain one (ejabberd's
/// `^(?:=[^=]+={3,} )?(%ExY…)`), else all it matched.
#[derive(Debug, Clone)]
pub struct RegexDate {
    /// fancy-regex, for the backreferences some use (`(?P<_sep>[-/.])%m(?P=_sep)`).
    regex: fancy_regex::Regex,
    cut_group: usize,
}

impl RegexDate {
    fn new(body: &str, anchored: bool) -> Option<RegexDate> {
        let mut regex = String::from(if anchored { "^" } else { "" });
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                regex.push(c);
                continue;
            }
            let directive = chars.next()?;
            let (name, fragment) = match directive {
                'Y' => ("Y", r"\d{4}"),
                'y' => ("y", r"\d{2}"),
                'm' => ("m", r"\d{1,2}"),
                'd' => ("d", r"\d{1,2}"),
                'e' => ("d", r" ?\d{1,2}"),
                'H' => ("H", r"\d{1,2}"),
                'I' => ("I", r"\d{1,2}"),
                'M' => ("M", r"\d{1,2}"),
                'S' => ("S", r"\d{1,2}"),
                'f' => ("f", r"\d{1,9}"),
                'b' | 'h' => ("b", r"[A-Za-z]{3}"),
                'B' => ("b", r"[A-Za-z]{3}[A-Za-z]*"),
                'a' => ("a", r"[A-Za-z]{3}"),
                'A' => ("a", r"[A-Za-z]+"),
                'p' => ("p", r"[AaPp][Mm]"),
                'z' => ("z", r"Z|UTC|GMT|[+-]\d{2}:?\d{2}"),
                '%' => {
                    regex.push('%');
                    continue;
                }
                _ => return None,
            };
            regex.push_str(&format!("(?P<{name}>{fragment})"));
        }
        // A plain group in the pattern as written (not one of the directives' named ones).
        let plain_group = body.as_bytes().windows(2).enumerate().any(|(i, w)| {
            w[0] == b'(' && w[1] != b'?' && (i == 0 || body.as_bytes()[i - 1] != b'\\')
        });
        let regex = fancy_regex::Regex::new(&regex).ok()?;
        Some(RegexDate {
            regex,
            cut_group: usize::from(plain_group),
        })
    }

    fn find(
        &self,
        line: &str,
        reference: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, std::ops::Range<usize>)> {
        let caps = self.regex.captures(line).ok()??;
        let text = |name: &str| caps.name(name).map(|m| m.as_str().trim());
        let number = |name: &str| text(name).and_then(|t| t.parse::<u32>().ok());
        let month = match number("m") {
            Some(month) => month,
            None => month_number(text("b")?.as_bytes().get(..3)?)?,
        };
        let day = number("d")?;
        let mut hour = number("H").or_else(|| number("I"))?;
        if let Some(half) = text("p") {
            hour %= 12;
            if half.eq_ignore_ascii_case("pm") {
                hour += 12;
            }
        }
        let clock = (hour, number("M").unwrap_or(0), number("S").unwrap_or(0));
        let nanos = text("f").map_or(0, |digits| {
            let padded = format!("{digits:0<9}");
            padded[..9].parse().unwrap_or(0)
        });
        let zone = match text("z") {
            None => None,
            Some("Z" | "UTC" | "GMT") => FixedOffset::east_opt(0),
            Some(offset) => Cursor::new(offset.as_bytes()).zone(),
        };
        let date = match (number("Y"), number("y")) {
            (Some(year), _) => NaiveDate::from_ymd_opt(year as i32, month, day)?,
            (None, Some(short)) => NaiveDate::from_ymd_opt(2000 + short as i32, month, day)?,
            (None, None) => infer_year(month, day, reference)?,
        };
        let time = to_utc(date, clock, nanos, zone)?;
        Some((time, caps.get(self.cut_group)?.range()))
    }
}

/// What a `BEFORE{DATE}AFTER` datepattern says around the date, split where Fail2Ban cuts.
///
/// Fail2Ban cuts out the pattern's first capturing group, or, when it has none, all it
/// matched: `^<W>{DATE}` takes `<W>` out with the date, `^[^\[]*(\[{DATE}\s*\])` the
/// brackets and the blanks before the closing one, and leaves what comes before the group.
#[derive(Debug, Clone)]
pub struct AroundDate {
    /// What comes before the cut, from the start of the line.
    outside: Regex,
    /// The cut's part before the date and after it.
    before: Regex,
    after: Regex,
}

impl AroundDate {
    fn new(before: &str, after: &str) -> Option<AroundDate> {
        let after = after.strip_suffix('$').unwrap_or(after);
        let (outside, before, after) = match unclosed_group(before) {
            Some((open, depth)) => {
                let close = closing_paren(after, depth)?;
                (&before[..open], &before[open + 1..], &after[..close])
            }
            None => ("", before, after),
        };
        let anchored = |part: &str| Regex::new(&format!("^(?:{part})")).ok();
        Some(AroundDate {
            outside: anchored(outside)?,
            before: anchored(before)?,
            after: anchored(after)?,
        })
    }

    fn find(
        &self,
        line: &str,
        reference: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, std::ops::Range<usize>)> {
        let start = self.outside.find(line)?.end();
        let date_start = start + self.before.find(&line[start..])?.end();
        let (time, range) = find_stamp(&line[date_start..], reference, true)?;
        let date_end = date_start + range.end;
        let end = date_end + self.after.find(&line[date_end..])?.end();
        Some((time, start..end))
    }
}

/// The first capturing group left open in `pattern` (a part of a regex), and how many groups
/// are open from it on: where the cut of a `BEFORE{DATE}AFTER` starts.
fn unclosed_group(pattern: &str) -> Option<(usize, usize)> {
    let bytes = pattern.as_bytes();
    // Open groups: where each starts and whether it captures.
    let mut open: Vec<(usize, bool)> = Vec::new();
    let mut index = 0;
    let mut in_class = false;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 1,
            b']' if in_class => in_class = false,
            _ if in_class => {}
            b'[' => {
                in_class = true;
                index = skip_class_start(bytes, index + 1) - 1;
            }
            b'(' => open.push((index, bytes.get(index + 1) != Some(&b'?'))),
            b')' => {
                open.pop();
            }
            _ => {}
        }
        index += 1;
    }
    let first = open.iter().position(|(_, capturing)| *capturing)?;
    Some((open[first].0, open.len() - first))
}

/// Where the group left open `depth` levels deep closes in `pattern`.
fn closing_paren(pattern: &str, mut depth: usize) -> Option<usize> {
    let bytes = pattern.as_bytes();
    let mut index = 0;
    let mut in_class = false;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 1,
            b']' if in_class => in_class = false,
            _ if in_class => {}
            b'[' => {
                in_class = true;
                index = skip_class_start(bytes, index + 1) - 1;
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(index);
                }
            }
            _ => {}
        }
        index += 1;
    }
    None
}

/// Past a class's opening: a leading `^` and `]` belong to the class.
fn skip_class_start(bytes: &[u8], mut index: usize) -> usize {
    if bytes.get(index) == Some(&b'^') {
        index += 1;
    }
    if bytes.get(index) == Some(&b']') {
        index += 1;
    }
    index
}

/// `1386543323.000` or `[1387288694]`: ten digits of seconds, an optional fraction.
fn find_epoch(line: &str, anchored: bool) -> Option<(DateTime<Utc>, std::ops::Range<usize>)> {
    let bytes = line.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let start = if bytes[index] == b'[' {
            index + 1
        } else {
            index
        };
        let boundary = start == 0 || !bytes[start - 1].is_ascii_alphanumeric();
        let mut end = start;
        while end < bytes.len() && bytes[end].is_ascii_digit() {
            end += 1;
        }
        if boundary && end - start == 10 {
            let seconds: i64 = line[start..end].parse().ok()?;
            let mut cursor = Cursor::new(bytes);
            cursor.pos = end;
            let nanos = cursor.fraction();
            if cursor
                .peek()
                .is_none_or(|next| !next.is_ascii_alphanumeric())
            {
                let time = DateTime::from_timestamp(seconds, nanos)?;
                return Some((time, start..cursor.pos));
            }
        }
        if anchored {
            return None;
        }
        index = end.max(index + 1);
    }
    None
}

/// `@4000000050a3e1c81e8ec1ac`: TAI64 seconds (2^62 + seconds since 1970, leap seconds
/// ignored as daemontools' readers do) and nanoseconds, in hex.
fn find_tai64n(line: &str, anchored: bool) -> Option<(DateTime<Utc>, std::ops::Range<usize>)> {
    let mut search = 0;
    while let Some(offset) = line[search..].find('@') {
        let start = search + offset;
        if anchored && start > 0 {
            return None;
        }
        let hex = line.get(start + 1..start + 25)?;
        if hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let seconds = u64::from_str_radix(&hex[..16], 16).ok()?;
            let nanos = u32::from_str_radix(&hex[16..], 16).ok()?;
            let unix = i64::try_from(seconds.checked_sub(1 << 62)?).ok()?;
            let time = DateTime::from_timestamp(unix, nanos)?;
            return Some((time, start..start + 25));
        }
        search = start + 1;
    }
    None
}

/// A filter's `datepattern`: a strftime format (`%Y-%m-%d %H:%M:%S`), optionally starting with
/// `^` (or Fail2Ban's `{^LN-BEG}`) to anchor it at the start of the message, or `EPOCH`.
#[derive(Debug, Clone)]
pub struct DatePattern {
    /// Finds the stamp in the message.
    finder: Regex,
    /// The format chrono parses the found text with (year appended when the format has none).
    format: String,
    has_year: bool,
    has_zone: bool,
    epoch: bool,
    /// Only a time of day: the date is the reference's (or the day before, when that time
    /// is still to come).
    time_only: bool,
}

/// Why a datepattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DatePatternError(String);

impl DatePattern {
    pub fn new(pattern: &str) -> Result<Self, DatePatternError> {
        DatePattern::build(pattern, false)
    }

    /// [`DatePattern::new`], also taking a time of day alone when `time_only_allowed`.
    fn build(pattern: &str, time_only_allowed: bool) -> Result<Self, DatePatternError> {
        let (anchored, body) = if let Some(rest) = pattern.strip_prefix("{^LN-BEG}") {
            (true, rest)
        } else if let Some(rest) = pattern.strip_prefix('^') {
            (true, rest)
        } else {
            (false, pattern)
        };
        let prefix = if anchored { "^" } else { "" };
        if body == "EPOCH" {
            let finder = Regex::new(&format!(r"{prefix}\b(\d{{9,10}}(?:\.\d+)?)\b"))
                .map_err(|e| DatePatternError(e.to_string()))?;
            return Ok(DatePattern {
                finder,
                format: String::new(),
                has_year: true,
                has_zone: true,
                epoch: true,
                time_only: false,
            });
        }
        let mut regex = String::from(prefix);
        let mut has_year = false;
        let mut has_zone = false;
        let mut chars = body.chars();
        regex.push('(');
        while let Some(c) = chars.next() {
            if c != '%' {
                regex.push_str(&regex::escape(&c.to_string()));
                continue;
            }
            let Some(directive) = chars.next() else {
                return Err(DatePatternError("datepattern ends with a lone `%`".into()));
            };
            let fragment = match directive {
                'Y' => {
                    has_year = true;
                    r"\d{4}"
                }
                'y' => {
                    has_year = true;
                    r"\d{2}"
                }
                'm' | 'd' | 'H' | 'I' | 'M' | 'S' => r"\d{1,2}",
                'e' => r" ?\d{1,2}",
                'j' => r"\d{1,3}",
                'f' => r"\d{1,9}",
                'b' | 'h' | 'a' => r"[A-Za-z]{3}",
                'B' | 'A' => r"[A-Za-z]+",
                'p' => r"(?:AM|PM|am|pm)",
                'z' => {
                    has_zone = true;
                    r"(?:Z|[+-]\d{2}:?\d{2})"
                }
                'T' => r"\d{2}:\d{2}:\d{2}",
                's' => {
                    has_year = true;
                    has_zone = true;
                    r"\d+"
                }
                '%' => "%",
                other => {
                    return Err(DatePatternError(format!(
                        "datepattern directive `%{other}` is not supported"
                    )));
                }
            };
            regex.push_str(fragment);
        }
        regex.push(')');
        let has_date =
            has_year || body.contains("%m") || body.contains("%b") || body.contains("%B");
        let time_only = !has_date && time_only_allowed && body.contains("%H");
        if !has_date && !time_only {
            return Err(DatePatternError(
                "datepattern needs at least a month (%m, %b or %B)".into(),
            ));
        }
        let finder = Regex::new(&regex).map_err(|e| DatePatternError(e.to_string()))?;
        Ok(DatePattern {
            finder,
            format: body.to_string(),
            has_year,
            has_zone,
            epoch: false,
            time_only,
        })
    }

    /// Finds the stamp; returns its time and its byte range in `text`.
    pub fn find(
        &self,
        text: &str,
        reference: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, std::ops::Range<usize>)> {
        let captures = self.finder.captures(text)?;
        let found = captures.get(1)?;
        let stamp = found.as_str();
        let time = if self.epoch {
            let seconds: f64 = stamp.parse().ok()?;
            DateTime::from_timestamp_millis((seconds * 1000.0) as i64)?
        } else if self.time_only {
            let clock = chrono::NaiveTime::parse_from_str(stamp, &self.format).ok()?;
            let today = reference.with_timezone(&Local).date_naive();
            let time = local_to_utc(today.and_time(clock))?;
            if time > reference {
                local_to_utc(today.pred_opt()?.and_time(clock))?
            } else {
                time
            }
        } else if self.has_zone {
            DateTime::parse_from_str(stamp, &self.format)
                .ok()?
                .with_timezone(&Utc)
        } else if self.has_year {
            local_to_utc(NaiveDateTime::parse_from_str(stamp, &self.format).ok()?)?
        } else {
            // chrono needs a year: try this year, and last year if that lands in the future.
            let with_year = format!("{stamp} {}", reference.year());
            let format = format!("{} %Y", self.format);
            let naive = NaiveDateTime::parse_from_str(&with_year, &format).ok()?;
            let date = infer_year(naive.month(), naive.day(), reference)?;
            local_to_utc(date.and_time(naive.time()))?
        };
        Some((time, found.range()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        local_to_utc(
            NaiveDate::from_ymd_opt(y, mo, d)
                .unwrap()
                .and_hms_opt(h, mi, s)
                .unwrap(),
        )
        .unwrap()
    }

    /// A zone with European-style DST (UTC+1, UTC+2 from 2026-03-29 01:00 UTC to 2026-10-25
    /// 01:00 UTC), and a half-hour jump on 2026-06-01 at 12:30 UTC, to test the remembered hour
    /// against a zone whose rules are known.
    #[derive(Debug, Clone, Copy)]
    struct TestZone;

    impl TestZone {
        fn offset_at_utc(utc: &NaiveDateTime) -> FixedOffset {
            let at = |mo, d, h, mi| {
                NaiveDate::from_ymd_opt(2026, mo, d)
                    .unwrap()
                    .and_hms_opt(h, mi, 0)
                    .unwrap()
            };
            let hours = if *utc >= at(3, 29, 1, 0) && *utc < at(10, 25, 1, 0) {
                if *utc >= at(6, 1, 12, 30) {
                    7200 + 1800
                } else {
                    7200
                }
            } else {
                3600
            };
            FixedOffset::east_opt(hours).unwrap()
        }
    }

    impl TimeZone for TestZone {
        type Offset = FixedOffset;

        fn from_offset(_: &FixedOffset) -> Self {
            TestZone
        }

        fn offset_from_local_date(&self, local: &NaiveDate) -> chrono::LocalResult<FixedOffset> {
            self.offset_from_local_datetime(&local.and_hms_opt(0, 0, 0).unwrap())
        }

        fn offset_from_local_datetime(
            &self,
            local: &NaiveDateTime,
        ) -> chrono::LocalResult<FixedOffset> {
            // Every offset the zone uses, largest first, so a fold lists the earlier instant first.
            let mut valid = [9000, 7200, 3600]
                .into_iter()
                .map(|seconds| FixedOffset::east_opt(seconds).unwrap())
                .filter(|&offset| {
                    TestZone::offset_at_utc(&local.checked_sub_offset(offset).unwrap()) == offset
                });
            match (valid.next(), valid.next()) {
                (None, _) => chrono::LocalResult::None,
                (Some(one), None) => chrono::LocalResult::Single(one),
                (Some(first), Some(second)) => chrono::LocalResult::Ambiguous(first, second),
            }
        }

        fn offset_from_utc_date(&self, utc: &NaiveDate) -> FixedOffset {
            TestZone::offset_at_utc(&utc.and_hms_opt(0, 0, 0).unwrap())
        }

        fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> FixedOffset {
            TestZone::offset_at_utc(utc)
        }
    }

    #[test]
    fn remembered_hour_gives_the_zone_rules_answer() {
        let uncached = |naive: NaiveDateTime| {
            TestZone
                .from_local_datetime(&naive)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
        };
        let mut remembered = None;
        let mut answered_from_memory = 0;
        // Every 7 minutes 13 seconds through a year: both DST changes, the half-hour jump, and
        // many lines within each ordinary hour.
        let mut naive = NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .and_hms_nano_opt(0, 0, 0, 250_000_000)
            .unwrap();
        let end = NaiveDate::from_ymd_opt(2027, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        while naive < end {
            let before = remembered;
            let got = zone_to_utc(&TestZone, naive, &mut remembered);
            assert_eq!(got, uncached(naive), "{naive}");
            if before.is_some_and(|b: HourOffset| b.uses + 1 == remembered.map_or(0, |r| r.uses)) {
                answered_from_memory += 1;
            }
            naive += chrono::Duration::seconds(7 * 60 + 13);
        }
        assert!(answered_from_memory > 50_000, "{answered_from_memory}");
        // The gap (02:00-03:00 local on 2026-03-29) has no time; in the fold (03:30 back to
        // 02:00 local on 2026-10-25) the earlier instant, still at +02:30, is taken.
        let in_gap = NaiveDate::from_ymd_opt(2026, 3, 29)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(zone_to_utc(&TestZone, in_gap, &mut remembered), None);
        let in_fold = NaiveDate::from_ymd_opt(2026, 10, 25)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(
            zone_to_utc(&TestZone, in_fold, &mut remembered),
            Some(utc(2026, 10, 25, 0, 0, 0))
        );
    }

    #[test]
    fn remembered_hour_is_looked_up_again_after_many_uses() {
        let naive = NaiveDate::from_ymd_opt(2026, 7, 1)
            .unwrap()
            .and_hms_opt(9, 0, 0)
            .unwrap();
        let mut remembered = Some(HourOffset {
            day: naive.date(),
            hour: 9,
            // Deliberately wrong: an entry past its reuse budget must not be trusted.
            offset: FixedOffset::east_opt(0).unwrap(),
            uses: OFFSET_REUSES,
        });
        let expected = TestZone
            .from_local_datetime(&naive)
            .single()
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            zone_to_utc(&TestZone, naive, &mut remembered),
            Some(expected)
        );
        assert_eq!(
            remembered.map(|r| (r.offset, r.uses)),
            Some((FixedOffset::east_opt(9000).unwrap(), 0))
        );
    }

    #[test]
    fn bsd_stamp_with_year_inferred() {
        let text = "Nov 26 07:00:01 host sshd[1]: x";
        let stamp = leading_stamp(text, reference()).unwrap();
        assert_eq!(stamp.kind, StampKind::Bsd);
        assert_eq!(stamp.time, local(2026, 11, 26, 7, 0, 1));
        assert_eq!(&text[stamp.len..], "host sshd[1]: x");
        // December seen in November is last year's December.
        let stamp = leading_stamp("Dec 31 23:59:59 h x", reference()).unwrap();
        assert_eq!(stamp.time, local(2025, 12, 31, 23, 59, 59));
        // Single-digit day padded with a blank.
        let stamp = leading_stamp("Nov  6 07:00:01 h x", reference()).unwrap();
        assert_eq!(stamp.time, local(2026, 11, 6, 7, 0, 1));
        // The year between the day and the time (macOS).
        let text = "Oct 27 2015 12:35:40 host screensharingd[1170]: x";
        let stamp = leading_stamp(text, reference()).unwrap();
        assert_eq!(stamp.kind, StampKind::Bsd);
        assert_eq!(stamp.time, local(2015, 10, 27, 12, 35, 40));
        assert_eq!(&text[stamp.len..], "host screensharingd[1170]: x");
    }

    #[test]
    fn remembered_stamp_gives_the_parsed_answer() {
        let lines = [
            "Nov 26 07:00:01 web1 sshd[1]: a",
            "Nov 26 07:00:01 web1 sshd[2]: b",
            "Nov 26 07:00:01 web1  sshd[2]: two blanks",
            "Nov 26 07:00:01 web1\tsshd[2]: tab",
            "Nov 26 07:00:01 2026 web1 sshd[3]: with a year",
            "Nov 26 07:00:01 2025 web1 sshd[3]: another year",
            "Nov 26 07:00:01 2025x web1 sshd[3]: not a year",
            "Nov 26 2025 07:00:01 web1 sshd[3]: the year before the time",
            "Nov 26 07:00:01.5 web1 sshd[3]: fraction",
            "Nov 26 07:00:01 web1 sshd[1]: a",
            "Nov 26 07:00:01x web1 sshd[1]: glued",
            "Nov 26 07:00:01 web1 sshd[1]: a",
            "Nov 26 07:00:02 web1 sshd[1]: next second",
            "Nov  6 07:00:02 web1 sshd[1]: padded day",
            "Nov 26 07:00:01 web1",
            "Nov 26 07:00:01 web",
            "Nov 26 07:00:01",
            "Dec 31 23:59:59 web1 sshd[1]: last year",
        ];
        let other_reference = reference() - chrono::Duration::days(400);
        for round in 0..2 {
            for line in lines {
                for at in [reference(), other_reference] {
                    let expected = parse_leading_stamp(line, at).map(|(stamp, _)| stamp);
                    assert_eq!(leading_stamp(line, at), expected, "round {round}: {line}");
                    // Asked twice in a row: the second answer may come from memory.
                    assert_eq!(leading_stamp(line, at), expected, "round {round}: {line}");
                }
            }
        }
        assert!(LAST_BSD_STAMP.get().is_some());
    }

    #[test]
    fn rfc3339_and_iso_stamps() {
        let stamp =
            leading_stamp("2026-11-26T07:00:01.5+01:00 host sshd[1]: x", reference()).unwrap();
        assert_eq!(stamp.kind, StampKind::Rfc3339);
        assert_eq!(
            stamp.time,
            utc(2026, 11, 26, 6, 0, 1) + chrono::Duration::milliseconds(500)
        );
        let stamp = leading_stamp("2026-11-26 07:00:01,123 fail2ban.actions", reference()).unwrap();
        assert_eq!(stamp.kind, StampKind::Other);
        assert_eq!(
            stamp.time,
            local(2026, 11, 26, 7, 0, 1) + chrono::Duration::milliseconds(123)
        );
        let stamp = leading_stamp("2026/11/26 07:00:01 [error] 12#12: x", reference()).unwrap();
        assert_eq!(stamp.time, local(2026, 11, 26, 7, 0, 1));
    }

    #[test]
    fn bracketed_stamps() {
        let text = "[Thu Nov 26 07:00:01.123456 2026] [auth_basic:error] x";
        let stamp = leading_stamp(text, reference()).unwrap();
        assert_eq!(&text[stamp.len..], "[auth_basic:error] x");
        assert_eq!(stamp.kind, StampKind::Other);
        let stamp = leading_stamp("[2026-11-26 07:00:01] NOTICE[1] x", reference()).unwrap();
        assert_eq!(stamp.time, local(2026, 11, 26, 7, 0, 1));
        let stamp = leading_stamp("[Nov 26 07:00:01] NOTICE[1] x", reference()).unwrap();
        assert_eq!(stamp.time, local(2026, 11, 26, 7, 0, 1));
        assert_eq!(stamp.kind, StampKind::Other);
    }

    #[test]
    fn not_stamps() {
        for text in [
            "1.2.3.4 - - [26/Nov/2026:07:00:01 +0000] \"GET /\"",
            "Failed password for root",
            "Nov 26 garbage",
            "2026-11-26T07:00:01Zjunk",
            "[2026-11-26 07:00:01 unclosed",
            "Novx 26 07:00:01 h",
            "",
        ] {
            assert_eq!(leading_stamp(text, reference()), None, "{text}");
        }
    }

    #[test]
    fn inline_clf_time() {
        let text = "1.2.3.4 - - [26/Nov/2026:07:00:01 +0100] \"POST /wp-login.php HTTP/1.1\" 200";
        assert_eq!(
            inline_time(text, reference()),
            Some(utc(2026, 11, 26, 6, 0, 1))
        );
        let text = "client 1.2.3.4 at 2026-11-26T07:00:01Z failed";
        assert_eq!(
            inline_time(text, reference()),
            Some(utc(2026, 11, 26, 7, 0, 1))
        );
        assert_eq!(
            inline_time("Failed password for root from 1.2.3.4", reference()),
            None
        );
    }

    #[test]
    fn datepattern_formats() {
        let pattern = DatePattern::new("%d-%m-%Y %H:%M:%S").unwrap();
        let (time, range) = pattern
            .find("at 26-11-2026 07:00:01 login", reference())
            .unwrap();
        assert_eq!(time, local(2026, 11, 26, 7, 0, 1));
        assert_eq!(range, 3..22);
        let pattern = DatePattern::new("^%b %d %H:%M:%S").unwrap();
        let (time, _) = pattern.find("Dec 01 00:00:00 x", reference()).unwrap();
        assert_eq!(time, local(2025, 12, 1, 0, 0, 0));
        assert!(pattern.find("x Dec 01 00:00:00", reference()).is_none());
        let pattern = DatePattern::new("EPOCH").unwrap();
        let (time, _) = pattern.find("ts=1764140401 x", reference()).unwrap();
        assert_eq!(time, utc(2025, 11, 26, 7, 0, 1));
        let pattern = DatePattern::new("%Y-%m-%dT%H:%M:%S%z").unwrap();
        let (time, _) = pattern
            .find("2026-11-26T07:00:01+0100", reference())
            .unwrap();
        assert_eq!(time, utc(2026, 11, 26, 6, 0, 1));
        assert!(DatePattern::new("%Q").is_err());
        assert!(DatePattern::new("%H:%M").is_err());
    }

    #[test]
    fn fail2ban_dates_are_found_where_fail2ban_finds_them() {
        let tai = Fail2BanDate::new("{^LN-BEG}TAI64N").unwrap();
        let line = "@400000004c91b044077a9e94 imap-login: Info: x";
        let (time, range) = tai.find(line, reference()).unwrap();
        assert_eq!(time.timestamp(), 0x4c91_b044);
        assert_eq!(&line[range], "@400000004c91b044077a9e94");

        let epoch = Fail2BanDate::new("{^LN-BEG}Epoch").unwrap();
        let line = "[1387288694] nsd[7745]: info: x";
        let (time, range) = epoch.find(line, reference()).unwrap();
        assert_eq!(time.timestamp(), 1_387_288_694);
        assert_eq!(&line[range], "1387288694");

        // Day first, in brackets: the brackets stay, as Fail2Ban leaves them.
        let default = Fail2BanDate::new("{^LN-BEG}").unwrap();
        let line = "[22-Jan-2013 22:28:21 +0200]: FAILED login for u from 192.0.2.1";
        let (time, range) = default.find(line, reference()).unwrap();
        assert_eq!(time, utc(2013, 1, 22, 20, 28, 21));
        assert_eq!(&line[..range.start], "[");
        assert_eq!(&line[range.end..range.end + 2], "]:");
        // Anchored: a date further in does not count.
        assert!(
            default
                .find("x 22-Jan-2013 22:28:21 y", reference())
                .is_none()
        );
        let anywhere = Fail2BanDate::new("").unwrap();
        assert!(
            anywhere
                .find("x 22-Jan-2013 22:28:21 y", reference())
                .is_some()
        );

        // Without a group, all the pattern matched is cut, prefix included (as Fail2Ban
        // does); with one, the group.
        let prefixed = Fail2BanDate::new("^<W>{DATE}").unwrap();
        let line = "<W>2015-11-29 16:38:01.818 1 => x";
        let (_, range) = prefixed.find(line, reference()).unwrap();
        assert_eq!(&line[range.end..], " 1 => x");
        assert_eq!(range.start, 0);
        let grouped = Fail2BanDate::new(r"^[^\[]*(\[{DATE}\s*\])").unwrap();
        let line = r#"192.0.2.1 - - - [31/Jan/2015:14:29:44 ] example.com "GET / HTTP/1.1""#;
        let (time, range) = grouped.find(line, reference()).unwrap();
        assert_eq!(time, local(2015, 1, 31, 14, 29, 44));
        let cut = format!("{}{}", &line[..range.start], &line[range.end..]);
        assert_eq!(cut, r#"192.0.2.1 - - -  example.com "GET / HTTP/1.1""#);
        // A group left open that never closes is no pattern.
        assert!(Fail2BanDate::new(r"^x(\[{DATE}").is_none());

        let format = Fail2BanDate::new("{^LN-BEG}%b-%d-%Exy %H:%M:%S").unwrap();
        let (time, _) = format
            .find("Apr-07-13 07:08:36 [SSL-out] x", reference())
            .unwrap();
        assert_eq!(time, local(2013, 4, 7, 7, 8, 36));
        // A zone's name before the stamp is part of it.
        let line = "[PDT Apr 16 21:05:29] error    : Warning: x";
        let (time, range) = anywhere.find(line, reference()).unwrap();
        assert_eq!(
            format!("{}{}", &line[..range.start], &line[range.end..]),
            "[] error    : Warning: x"
        );
        assert_eq!(time.format("%m-%d %H:%M").to_string(), "04-17 04:05");
        // An unknown name is no zone: it stays in the line, the stamp after it is cut.
        let line = "[XYZQ Apr 16 21:05:29] x";
        let (_, range) = anywhere.find(line, reference()).unwrap();
        assert_eq!(&line[..range.start], "[XYZQ ");
        // A time alone is today's, or yesterday's when it is still to come.
        let clock = Fail2BanDate::new("^%H:%M:%S.%f").unwrap();
        let line = "12:57:32.907 [http-nio-8080-exec-10] WARN x";
        let (time, range) = clock.find(line, reference()).unwrap();
        assert_eq!(&line[range.end..], " [http-nio-8080-exec-10] WARN x");
        assert!(time <= reference() && reference() - time < chrono::Duration::days(1));
        assert!(
            DatePattern::new("%H:%M:%S").is_err(),
            "logjail's own need a date"
        );
        // Formats that are regexes are read by their fields.
        let regex = Fail2BanDate::new("%d/%b[^/]*/%Y:%H:%M:%S %z").unwrap();
        let line = r#"192.0.2.10 -  -  [02/sept./2015:00:11:31 +0200] "GET / HTTP/1.1" 401"#;
        let (time, range) = regex.find(line, reference()).unwrap();
        assert_eq!(time, utc(2015, 9, 1, 22, 11, 31));
        assert_eq!(&line[range.end..range.end + 2], "] ");
        let separated =
            Fail2BanDate::new("{^LN-BEG}%ExY(?P<_sep>[-/.])%m(?P=_sep)%d[T ]%H:%M:%S(?:[.,]%f)?")
                .unwrap();
        let (time, _) = separated
            .find("2013.01.22 22:28:21,5 x", reference())
            .unwrap();
        assert_eq!(
            time,
            local(2013, 1, 22, 22, 28, 21) + chrono::Duration::milliseconds(500)
        );
        assert!(
            separated
                .find("2013.01-22 22:28:21 x", reference())
                .is_none()
        );
        let grouped = Fail2BanDate::new(r"^(?:=[^=]+={3,} )?(%ExY-%m-%d %H:%M:%S)").unwrap();
        let line = "=INFO REPORT==== 2013-01-22 22:28:21 ===";
        let (_, range) = grouped.find(line, reference()).unwrap();
        assert_eq!(&line[range], "2013-01-22 22:28:21");
        let half_day = Fail2BanDate::new("^%b %d, %ExY %I:%M:%S %p").unwrap();
        let (time, _) = half_day
            .find("Aug 14, 2005 10:00:01 PM x", reference())
            .unwrap();
        assert_eq!(time, local(2005, 8, 14, 22, 0, 1));
        // What logjail cannot read is said, not guessed at.
        assert!(Fail2BanDate::new("{^LN-BEG}%ExY%Q").is_none());
    }
}
