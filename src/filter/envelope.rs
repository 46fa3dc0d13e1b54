//! Envelopes: turn a raw log line (json-file, CRI, syslog, bare) into the message a filter sees.
//!
//! The same sshd message reaches logjail wrapped in many ways: a syslog prefix in
//! `/var/log/auth.log`, a Docker json-file object, a CRI line on k3s, or bare on a container's
//! stderr. Stripping the wrapper here, once per line, lets every filter be written against the
//! bare message and match all of them alike.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::date::{self, StampKind};

/// Which output stream of a container a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn parse(text: &str) -> Option<Stream> {
        match text {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// The container wrapper a line was found in, for `logjail regex` statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeKind {
    Plain,
    DockerJson,
    Cri,
}

/// A log line unwrapped: what filters see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The message without envelope, leading stamp, syslog host and tag, trimmed.
    pub text: Cow<'a, str>,
    /// The envelope's time, else the leading stamp's; `None` when neither exists (a filter may
    /// still find one inside the message).
    pub time: Option<DateTime<Utc>>,
    /// The syslog tag's program name (`sshd` of `sshd[123]:`), when there was one.
    pub program: Option<Cow<'a, str>>,
    /// The syslog tag's process id (`123` of `sshd[123]:`): which session of the program.
    pub pid: Option<u32>,
    /// The container stream, for json-file and CRI lines.
    pub stream: Option<Stream>,
    pub envelope: EnvelopeKind,
    /// The kind of leading stamp that was stripped, if any.
    pub stamp: Option<StampKind>,
    /// The line as the envelope unwrapped it (json-file and CRI decoded), stamp and syslog
    /// header still in, only its line end removed: Fail2Ban filter files are written against
    /// it, with only the date cut out, and some of their patterns end in the blank the
    /// daemon writes last (3proxy's `… \d+\s`).
    pub line: Cow<'a, str>,
}

impl<'a> Record<'a> {
    /// A record made by a source that already knows the parts (the journal gives the program
    /// and time as fields): the text is still cleaned of a leading stamp and tag.
    pub fn from_parts(
        text: &'a str,
        time: Option<DateTime<Utc>>,
        program: Option<&'a str>,
        now: DateTime<Utc>,
    ) -> Record<'a> {
        let mut record = normalize(Cow::Borrowed(text), time, now);
        if let Some(program) = program {
            record.program = Some(Cow::Borrowed(program));
        }
        record
    }
}

/// A json-file object; extra keys (`attrs`) are ignored on purpose.
#[derive(Deserialize)]
struct DockerJsonLine<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(default)]
    stream: Option<Cow<'a, str>>,
    #[serde(default)]
    time: Option<Cow<'a, str>>,
}

/// A message being put together from partial pieces (Docker splits lines at 16 KiB, CRI
/// marks pieces with `P`).
#[derive(Debug, Default)]
struct Partial {
    text: String,
    time: Option<DateTime<Utc>>,
    envelope: Option<EnvelopeKind>,
    /// Set once the joined text would pass the cap: the line is dropped whole when it ends.
    truncated: bool,
}

/// Upper bound of one joined line; a container that never ends its line cannot make us grow.
/// A longer line is dropped whole, as the file and Docker API sources drop theirs: cut at the
/// cap, it would end where whoever wrote its middle chose, and a client-chosen text that
/// reaches the cap could end with a forged `from 6.6.6.6 port 22` of its own.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Decodes lines one by one, joining partial lines per stream.
#[derive(Debug, Default)]
pub struct Decoder {
    partial: [Partial; 2],
    /// The finished line, kept here so the record can borrow it.
    joined: String,
}

impl Decoder {
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Decodes one raw line (with or without its newline) using the wall clock to place
    /// year-less stamps. Returns `None` while a partial line is being joined.
    pub fn push<'a>(&'a mut self, raw: &'a str) -> Option<Record<'a>> {
        self.push_at(raw, Utc::now())
    }

    /// As [`Decoder::push`], with `now` as the reference time for year-less stamps.
    pub fn push_at<'a>(&'a mut self, raw: &'a str, now: DateTime<Utc>) -> Option<Record<'a>> {
        let raw = raw.strip_suffix('\n').unwrap_or(raw);
        if raw.starts_with("{\"log\":")
            && let Ok(line) = serde_json::from_str::<DockerJsonLine<'_>>(raw)
        {
            let stream = line.stream.as_deref().and_then(Stream::parse);
            let time = line
                .time
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            // json-file ends every complete line with "\n"; without it this is a piece.
            let complete = line.log.ends_with('\n');
            return self.assemble(
                EnvelopeKind::DockerJson,
                stream,
                line.log,
                time,
                complete,
                now,
            );
        }
        if let Some(cri) = parse_cri(raw) {
            return self.assemble(
                EnvelopeKind::Cri,
                Some(cri.stream),
                Cow::Borrowed(cri.text),
                Some(cri.time),
                cri.complete,
                now,
            );
        }
        Some(normalize(Cow::Borrowed(raw), None, now))
    }

    /// Returns what is left of partial lines at the end of input (a file cut mid-line); a line
    /// already past [`MAX_LINE_BYTES`] is not among them.
    pub fn flush(&mut self, now: DateTime<Utc>) -> Vec<Record<'static>> {
        let mut out = Vec::new();
        for partial in &mut self.partial {
            if let Some(envelope) = partial.envelope.take()
                && !partial.truncated
            {
                let text = std::mem::take(&mut partial.text);
                let mut record = normalize(Cow::Owned(text), partial.time.take(), now);
                record.envelope = envelope;
                out.push(record.into_owned());
            }
            partial.truncated = false;
        }
        out
    }

    fn assemble<'a>(
        &'a mut self,
        envelope: EnvelopeKind,
        stream: Option<Stream>,
        piece: Cow<'a, str>,
        time: Option<DateTime<Utc>>,
        complete: bool,
        now: DateTime<Utc>,
    ) -> Option<Record<'a>> {
        let slot = &mut self.partial[stream.unwrap_or(Stream::Stdout).index()];
        if slot.envelope.is_none() && complete {
            let mut record = normalize(piece, time, now);
            record.envelope = envelope;
            record.stream = stream;
            return Some(record);
        }
        if slot.envelope.is_none() {
            slot.envelope = Some(envelope);
            // The first piece's time is when the line started.
            slot.time = time;
        }
        if !slot.truncated {
            if slot.text.len() + piece.len() > MAX_LINE_BYTES {
                slot.text = String::new();
                slot.truncated = true;
            } else {
                slot.text.push_str(&piece);
            }
        }
        if !complete {
            return None;
        }
        self.joined = std::mem::take(&mut slot.text);
        let time = slot.time.take();
        slot.envelope = None;
        if std::mem::take(&mut slot.truncated) {
            // One warning per MiB an attacker has to send: no flood, but never silent.
            tracing::warn!(
                max_bytes = MAX_LINE_BYTES,
                "a container line joined from partial pieces is longer than the limit: dropped whole"
            );
            return None;
        }
        let mut record = normalize(Cow::Borrowed(self.joined.as_str()), time, now);
        record.envelope = envelope;
        record.stream = stream;
        Some(record)
    }
}

impl Record<'_> {
    /// Detaches the record from the line it borrows.
    pub fn into_owned(self) -> Record<'static> {
        Record {
            text: Cow::Owned(self.text.into_owned()),
            time: self.time,
            program: self.program.map(|p| Cow::Owned(p.into_owned())),
            pid: self.pid,
            stream: self.stream,
            envelope: self.envelope,
            stamp: self.stamp,
            line: Cow::Owned(self.line.into_owned()),
        }
    }
}

struct CriLine<'a> {
    time: DateTime<Utc>,
    stream: Stream,
    complete: bool,
    text: &'a str,
}

/// `2026-11-26T07:00:01.123456789Z stderr F message` (the kubelet's log format).
fn parse_cri(raw: &str) -> Option<CriLine<'_>> {
    if !raw.as_bytes().first()?.is_ascii_digit() {
        return None;
    }
    let (stamp, rest) = raw.split_once(' ')?;
    let (stream, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let stream = Stream::parse(stream)?;
    let (tag, text) = match rest.split_once(' ') {
        Some((tag, text)) => (tag, text),
        None => (rest, ""),
    };
    // The tag field may carry more flags after a colon in future versions; P/F comes first.
    let complete = match tag.split(':').next() {
        Some("F") => true,
        Some("P") => false,
        _ => return None,
    };
    let time = DateTime::parse_from_rfc3339(stamp)
        .ok()?
        .with_timezone(&Utc);
    Some(CriLine {
        time,
        stream,
        complete,
        text,
    })
}

/// Cleans a message: trims it, drops a `<PRI>`, a leading stamp and a syslog host and tag.
fn normalize(
    text: Cow<'_, str>,
    envelope_time: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Record<'_> {
    let (text_range, program_range, stamp_time, stamp) = {
        let full: &str = &text;
        let trimmed_end = full.trim_end_matches(['\r', '\n', ' ', '\t']).len();
        let mut start = full.len() - full.trim_start().len();
        start = start.min(trimmed_end);
        let mut body = &full[start..trimmed_end];
        let mut with_priority = false;
        if let Some(skip) = syslog_priority(body) {
            start += skip;
            body = &full[start..trimmed_end];
            with_priority = true;
        }
        let reference = envelope_time.unwrap_or(now);
        let mut program_range = None;
        let mut stamp_time = None;
        let mut stamp_kind = None;
        let rfc5424 = if with_priority { rfc5424(body) } else { None };
        if let Some(header) = rfc5424 {
            stamp_time = header.time;
            stamp_kind = header.time.map(|_| StampKind::Rfc3339);
            program_range = header.app.map(|app| (start + app.start, start + app.end));
            start += header.message_start;
        } else if let Some(stamp) = date::leading_stamp(body, reference) {
            start += stamp.len;
            body = &full[start..trimmed_end];
            stamp_time = Some(stamp.time);
            stamp_kind = Some(stamp.kind);
            if matches!(stamp.kind, StampKind::Bsd | StampKind::Rfc3339)
                && let Some(tag) = syslog_tag(body, true)
            {
                program_range = Some((start + tag.program.start, start + tag.program.end));
                start += tag.message_start;
            }
        } else if let Some(tag) = syslog_tag(body, false) {
            program_range = Some((start + tag.program.start, start + tag.program.end));
            start += tag.message_start;
        }
        (
            (start.min(trimmed_end), trimmed_end),
            program_range,
            stamp_time,
            stamp_kind,
        )
    };
    let time = envelope_time.or(stamp_time);
    let pid = program_range.and_then(|(_, end)| {
        let after = text.get(end..)?.strip_prefix('[')?;
        after[..after.find(']')?].parse().ok()
    });
    let (text, program, line) = match text {
        Cow::Borrowed(full) => (
            Cow::Borrowed(&full[text_range.0..text_range.1]),
            program_range.map(|(s, e)| Cow::Borrowed(&full[s..e])),
            Cow::Borrowed(full.trim_end_matches(['\r', '\n'])),
        ),
        Cow::Owned(mut full) => {
            let text = Cow::Owned(full[text_range.0..text_range.1].to_string());
            let program = program_range.map(|(s, e)| Cow::Owned(full[s..e].to_string()));
            full.truncate(full.trim_end_matches(['\r', '\n']).len());
            (text, program, Cow::Owned(full))
        }
    };
    Record {
        text,
        time,
        program,
        pid,
        stream: None,
        envelope: EnvelopeKind::Plain,
        stamp,
        line,
    }
}

/// The header of an RFC 5424 message (after its `<PRI>`):
/// `1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG`.
struct Rfc5424Header {
    time: Option<DateTime<Utc>>,
    /// APP-NAME, unless it is the nil value `-`.
    app: Option<std::ops::Range<usize>>,
    message_start: usize,
}

fn rfc5424(body: &str) -> Option<Rfc5424Header> {
    let rest = body.strip_prefix("1 ")?;
    let mut offset = 2;
    let mut fields = [0..0, 0..0, 0..0, 0..0, 0..0];
    let mut cursor = rest;
    for field in &mut fields {
        let end = cursor.find(' ')?;
        *field = offset..offset + end;
        offset += end + 1;
        cursor = &cursor[end + 1..];
    }
    let [stamp, _host, app, _procid, _msgid] = fields;
    let time = match &body[stamp] {
        "-" => None,
        text => Some(DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc)),
    };
    // STRUCTURED-DATA: `-`, or `[id k="v" …]` elements whose values may escape `]` and `"`.
    let bytes = body.as_bytes();
    let mut index = offset;
    if bytes.get(index) == Some(&b'-') {
        index += 1;
    } else {
        while bytes.get(index) == Some(&b'[') {
            let mut in_value = false;
            index += 1;
            loop {
                match bytes.get(index)? {
                    b'\\' if in_value => index += 1,
                    b'"' => in_value = !in_value,
                    b']' if !in_value => break,
                    _ => {}
                }
                index += 1;
            }
            index += 1;
        }
    }
    match bytes.get(index) {
        None => {}
        Some(b' ') => index += 1,
        Some(_) => return None,
    }
    // An optional UTF-8 byte order mark starts the message.
    if body[index..].starts_with('\u{feff}') {
        index += '\u{feff}'.len_utf8();
    }
    let app = (&body[app.clone()] != "-").then_some(app);
    Some(Rfc5424Header {
        time,
        app,
        message_start: index,
    })
}

/// `<34>` at the start of a raw syslog line.
fn syslog_priority(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'<') {
        return None;
    }
    let close = bytes.iter().take(5).position(|&b| b == b'>')?;
    if close < 2 || !bytes[1..close].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(close + 1)
}

struct Tag {
    program: std::ops::Range<usize>,
    message_start: usize,
}

/// Finds `[host ]prog[pid]: ` at the start of what follows a syslog stamp. Without a stamp
/// (`after_stamp == false`) only `prog[pid]: ` with a pid counts, so that a bare
/// `error: …` message is not mistaken for a tag.
fn syslog_tag(body: &str, after_stamp: bool) -> Option<Tag> {
    let first_end = first_blank(body);
    if let Some(program) = tag_program(&body[..first_end], after_stamp) {
        return Some(Tag {
            program,
            message_start: skip_blanks(body, first_end),
        });
    }
    if !after_stamp || first_end == body.len() {
        return None;
    }
    let second_start = first_end + 1;
    let rest = &body[second_start..];
    let second_end = first_blank(rest);
    let program = tag_program(&rest[..second_end], true)?;
    Some(Tag {
        program: second_start + program.start..second_start + program.end,
        message_start: skip_blanks(body, second_start + second_end),
    })
}

/// Index of the first `' '`, or the length. The tokens searched are a few bytes long, where a
/// plain byte loop beats `str::find`'s general searcher.
fn first_blank(text: &str) -> usize {
    text.bytes().position(|b| b == b' ').unwrap_or(text.len())
}

fn skip_blanks(body: &str, mut index: usize) -> usize {
    let bytes = body.as_bytes();
    while index < bytes.len() && bytes[index] == b' ' {
        index += 1;
    }
    index
}

/// `sshd[123]:` → the range of `sshd`.
fn tag_program(token: &str, pid_optional: bool) -> Option<std::ops::Range<usize>> {
    let token = token.strip_suffix(':')?;
    let name_end = match token.strip_suffix(']') {
        Some(with_pid) => {
            // A byte scan: `rfind` sets up a general searcher for a token of a dozen bytes.
            let open = with_pid.bytes().rposition(|b| b == b'[')?;
            let pid = &with_pid[open + 1..];
            if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            open
        }
        None if pid_optional => token.len(),
        None => return None,
    };
    let name = &token[..name_end];
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b'@'));
    valid.then_some(0..name_end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
    }

    fn decode(raw: &str) -> Record<'static> {
        let mut decoder = Decoder::new();
        decoder.push_at(raw, now()).unwrap().into_owned()
    }

    const MESSAGE: &str = "Failed password for root from 10.0.0.2 port 33758 ssh2";

    #[test]
    fn same_message_from_every_envelope() {
        let variants = [
            format!("Nov 26 07:00:01 web sshd[123]: {MESSAGE}"),
            format!("Nov 26 07:00:01 sshd[123]: {MESSAGE}"),
            format!("2026-11-26T07:00:01.123456+00:00 web sshd[123]: {MESSAGE}"),
            format!("<38>Nov 26 07:00:01 web sshd[123]: {MESSAGE}"),
            format!("sshd[123]: {MESSAGE}"),
            format!("{MESSAGE}\r\n"),
            format!(
                "{{\"log\":\"{MESSAGE}\\r\\n\",\"stream\":\"stderr\",\"time\":\"2026-11-26T07:00:01.123456789Z\"}}"
            ),
            format!("2026-11-26T07:00:01.123456789Z stderr F {MESSAGE}"),
        ];
        for raw in &variants {
            let record = decode(raw);
            assert_eq!(record.text, MESSAGE, "{raw}");
        }
        assert_eq!(decode(&variants[0]).program.as_deref(), Some("sshd"));
        assert_eq!(decode(&variants[5]).program, None);
        let json = decode(&variants[6]);
        assert_eq!(json.envelope, EnvelopeKind::DockerJson);
        assert_eq!(json.stream, Some(Stream::Stderr));
        assert_eq!(
            json.time,
            Some(
                Utc.with_ymd_and_hms(2026, 11, 26, 7, 0, 1).unwrap()
                    + chrono::Duration::nanoseconds(123_456_789)
            )
        );
        assert_eq!(decode(&variants[7]).envelope, EnvelopeKind::Cri);
    }

    #[test]
    fn syslog_inside_container_envelope() {
        let raw = r#"{"log":"Nov 26 07:00:01 mail postfix/smtpd[77]: warning: unknown[1.2.3.4]: SASL LOGIN authentication failed: x\n","stream":"stdout","time":"2026-11-26T07:00:02Z"}"#;
        let record = decode(raw);
        assert_eq!(record.program.as_deref(), Some("postfix/smtpd"));
        assert!(record.text.starts_with("warning: unknown[1.2.3.4]"));
        // The envelope's time wins over the year-less syslog stamp.
        assert_eq!(
            record.time,
            Some(Utc.with_ymd_and_hms(2026, 11, 26, 7, 0, 2).unwrap())
        );
    }

    #[test]
    fn rfc5424_lines() {
        let record = decode(&format!(
            "<38>1 2026-11-26T07:00:01.003Z web sshd 1234 - - {MESSAGE}"
        ));
        assert_eq!(record.text, MESSAGE);
        assert_eq!(record.program.as_deref(), Some("sshd"));
        assert_eq!(
            record.time,
            Some(
                Utc.with_ymd_and_hms(2026, 11, 26, 7, 0, 1).unwrap()
                    + chrono::Duration::milliseconds(3)
            )
        );
        let record = decode(&format!(
            r#"<38>1 - web app - ID47 [exampleSDID@32473 iut="3" x="a\]b"][x@1 y="z"] {}{MESSAGE}"#,
            '\u{feff}'
        ));
        assert_eq!(record.text, MESSAGE);
        assert_eq!(record.program.as_deref(), Some("app"));
        let record = decode("<38>1 2026-11-26T07:00:01Z web - - - -");
        assert_eq!(record.text, "");
        assert_eq!(record.program, None);
    }

    #[test]
    fn bare_error_prefix_is_not_a_tag() {
        let record = decode("error: PAM: Authentication failure for root from 1.2.3.4");
        assert_eq!(record.program, None);
        assert_eq!(
            record.text,
            "error: PAM: Authentication failure for root from 1.2.3.4"
        );
    }

    #[test]
    fn syslog_without_tag_keeps_text() {
        let record = decode("Nov 26 07:00:01 just some words");
        assert_eq!(record.program, None);
        assert_eq!(record.text, "just some words");
    }

    #[test]
    fn docker_partial_lines_are_joined_per_stream() {
        let mut decoder = Decoder::new();
        let first = r#"{"log":"Failed password for root ","stream":"stderr","time":"2026-11-26T07:00:01Z"}"#;
        let other =
            r#"{"log":"unrelated stdout line\n","stream":"stdout","time":"2026-11-26T07:00:01Z"}"#;
        let last = r#"{"log":"from 1.2.3.4 port 1 ssh2\n","stream":"stderr","time":"2026-11-26T07:00:02Z"}"#;
        assert!(decoder.push_at(first, now()).is_none());
        assert_eq!(
            decoder.push_at(other, now()).unwrap().text,
            "unrelated stdout line"
        );
        let record = decoder.push_at(last, now()).unwrap();
        assert_eq!(
            record.text,
            "Failed password for root from 1.2.3.4 port 1 ssh2"
        );
        assert_eq!(
            record.time,
            Some(Utc.with_ymd_and_hms(2026, 11, 26, 7, 0, 1).unwrap())
        );
    }

    #[test]
    fn cri_partial_lines_are_joined() {
        let mut decoder = Decoder::new();
        assert!(
            decoder
                .push_at("2026-11-26T07:00:01Z stdout P Failed pass", now())
                .is_none()
        );
        let record = decoder
            .push_at(
                "2026-11-26T07:00:01Z stdout F word for root from ::1",
                now(),
            )
            .unwrap();
        assert_eq!(record.text, "Failed password for root from ::1");
        // An unfinished piece at end of input is still delivered.
        assert!(
            decoder
                .push_at("2026-11-26T07:00:03Z stderr P tail", now())
                .is_none()
        );
        let rest = decoder.flush(now());
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].text, "tail");
    }

    #[test]
    fn cri_stamps_take_any_number_of_fraction_digits_and_offsets() {
        let second = Utc.with_ymd_and_hms(2026, 12, 1, 20, 47, 24).unwrap();
        let cases = [
            // containerd trims trailing zeros of the nanoseconds: the digits vary per line.
            ("2026-12-01T20:47:24Z", 0),
            ("2026-12-01T20:47:24.2Z", 200_000_000),
            ("2026-12-01T20:47:24.24237607Z", 242_376_070),
            ("2026-12-01T20:47:24.242376071Z", 242_376_071),
            // CRI-O writes local time with its offset.
            ("2026-12-01T21:47:24.5+01:00", 500_000_000),
        ];
        for (stamp, nanos) in cases {
            let record = decode(&format!("{stamp} stdout F {MESSAGE}"));
            assert_eq!(record.envelope, EnvelopeKind::Cri, "{stamp}");
            assert_eq!(record.text, MESSAGE, "{stamp}");
            assert_eq!(
                record.time,
                Some(second + chrono::Duration::nanoseconds(nanos)),
                "{stamp}"
            );
        }
    }

    #[test]
    fn cri_empty_lines_and_interleaved_streams() {
        let empty = decode("2026-12-01T20:47:24.1Z stdout F ");
        assert_eq!(empty.envelope, EnvelopeKind::Cri);
        assert_eq!(empty.text, "");
        let bare = decode("2026-12-01T20:47:24.1Z stderr F");
        assert_eq!(bare.envelope, EnvelopeKind::Cri);
        assert_eq!(bare.stream, Some(Stream::Stderr));
        // Pieces of a long stderr line with a whole stdout line between them (the runtime
        // copies the two pipes independently).
        let mut decoder = Decoder::new();
        assert!(
            decoder
                .push_at(
                    "2026-12-01T20:47:24.1Z stderr P Failed password for ",
                    now()
                )
                .is_none()
        );
        let between = decoder
            .push_at("2026-12-01T20:47:24.15Z stdout F GET / 200", now())
            .unwrap();
        assert_eq!(between.text, "GET / 200");
        assert_eq!(between.stream, Some(Stream::Stdout));
        let joined = decoder
            .push_at(
                "2026-12-01T20:47:24.2Z stderr F root from 10.0.0.2 port 1 ssh2",
                now(),
            )
            .unwrap();
        assert_eq!(
            joined.text,
            "Failed password for root from 10.0.0.2 port 1 ssh2"
        );
        assert_eq!(joined.stream, Some(Stream::Stderr));
    }

    #[test]
    fn a_line_in_cri_shape_with_a_bad_stamp_or_tag_is_plain() {
        for raw in [
            "2026-13-01T20:47:24Z stdout F message",
            "2026-12-01T20:47:24Z stdin F message",
            "2026-12-01T20:47:24Z stdout X message",
        ] {
            assert_eq!(decode(raw).envelope, EnvelopeKind::Plain, "{raw}");
        }
    }

    #[test]
    fn joined_lines_over_the_cap_are_dropped_whole() {
        let mut decoder = Decoder::new();
        let piece = "x".repeat(64 * 1024);
        for _ in 0..40 {
            let raw = format!("2026-11-26T07:00:01Z stdout P {piece}");
            assert!(decoder.push_at(&raw, now()).is_none());
        }
        assert!(
            decoder
                .push_at("2026-11-26T07:00:01Z stdout F end", now())
                .is_none()
        );
        assert!(decoder.flush(now()).is_empty());
        // The next line starts afresh.
        let record = decoder
            .push_at("2026-11-26T07:00:02Z stdout F next", now())
            .unwrap();
        assert_eq!(record.text, "next");
        // A line of exactly the cap is still whole.
        let head = "y".repeat(MAX_LINE_BYTES - 1);
        assert!(
            decoder
                .push_at(&format!("2026-11-26T07:00:03Z stdout P {head}"), now())
                .is_none()
        );
        let record = decoder
            .push_at("2026-11-26T07:00:03Z stdout F z", now())
            .unwrap();
        assert_eq!(record.text.len(), MAX_LINE_BYTES);
    }

    #[test]
    fn a_line_cut_at_the_cap_never_ends_with_a_forged_tail() {
        // A client-chosen user name long enough that the cap would fall right after its own
        // forged " from 6.6.6.6 port 22": the line, cut there, would read as a failure of
        // 6.6.6.6. It is dropped instead, in both container envelopes.
        let prefix = "Invalid user ";
        let forged = " from 6.6.6.6 port 22";
        let padding = "a".repeat(MAX_LINE_BYTES - prefix.len() - forged.len());
        let message = format!("{prefix}{padding}{forged} from 10.0.0.1 port 4242");
        let chunks: Vec<&str> = message
            .as_bytes()
            .chunks(16 * 1024)
            .map(|chunk| std::str::from_utf8(chunk).unwrap())
            .collect();
        let last = chunks.len() - 1;
        let cri: Vec<String> = chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let tag = if i == last { 'F' } else { 'P' };
                format!("2026-11-26T07:00:01Z stderr {tag} {chunk}")
            })
            .collect();
        let json: Vec<String> = chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let log = if i == last {
                    format!("{chunk}\\n")
                } else {
                    chunk.to_string()
                };
                format!(r#"{{"log":"{log}","stream":"stderr","time":"2026-11-26T07:00:01Z"}}"#)
            })
            .collect();
        for lines in [cri, json] {
            let mut decoder = Decoder::new();
            for line in &lines {
                if let Some(record) = decoder.push_at(line, now()) {
                    panic!(
                        "a cut line was handed on: …{}",
                        &record.text[record.text.len() - 40..]
                    );
                }
            }
        }
    }

    #[test]
    fn malformed_json_is_plain_text() {
        let record = decode(r#"{"log": broken"#);
        assert_eq!(record.envelope, EnvelopeKind::Plain);
        assert_eq!(record.text, r#"{"log": broken"#);
    }

    #[test]
    fn journal_parts() {
        let record = Record::from_parts(MESSAGE, None, Some("sshd"), now());
        assert_eq!(record.program.as_deref(), Some("sshd"));
        assert_eq!(record.text, MESSAGE);
    }
}
