//! Turning the Docker API's log frames into whole lines, and resuming by time.
//!
//! `GET /containers/ID/logs?timestamps=1` sends each log message as one frame (multiplexed
//! with an 8-byte header per stream, or raw for a TTY container) starting with the message's
//! RFC 3339 time and a space. A message is not always a whole line: Docker splits lines longer
//! than 16 KiB into several messages, each with its own time, and a program may write half a
//! line and finish it later. So bytes are gathered per stream until a newline, and the line
//! keeps the time of its first piece.
//!
//! Each line is handed on in the CRI form `TIME STREAM F MESSAGE`, which the matcher's
//! envelope decoder reads like a kubelet log line: the time stays the record's time, and the
//! message reaches filters unchanged. Bytes that are not UTF-8 are replaced, never dropped.
//!
//! Docker 20.10 sends a line twice when the json-file log rotates during `logs --follow`
//! (the line at the rotation, with its original time). A line whose stream, time (to the
//! nanosecond) and bytes equal one of the last few handed on is such a repeat, and is dropped.

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::filter::envelope::Stream;
use crate::messages::{Position, RawLine};
use crate::source::file::MAX_LINE_BYTES;

/// A line being put together from frames of one stream.
#[derive(Debug, Default)]
struct Pending {
    /// The time of the line's first piece.
    time: Option<DateTime<Utc>>,
    bytes: Vec<u8>,
    /// The line grew past [`MAX_LINE_BYTES`]: the rest of it is skipped and it is dropped whole
    /// (a cut line would end where an attacker chose).
    discarding: bool,
}

/// How many recent lines per stream are remembered to recognise Docker's repeats.
const RECENT_LINES: usize = 32;

/// Gathers frames into lines and numbers them for resuming.
#[derive(Debug)]
pub struct ApiLines {
    pending: [Pending; 2],
    /// Time and hash of the last lines handed on, per stream.
    recent: [VecDeque<(DateTime<Utc>, u64)>; 2],
    /// Lines Docker sent twice, dropped.
    pub repeats_dropped: u64,
    /// The time of the last line handed on, and how many lines had exactly that time.
    last: Option<(DateTime<Utc>, u32)>,
    /// While resuming: lines at or before this time were handed on by an earlier run (the
    /// first `.1` of those at exactly this time).
    skip: Option<(DateTime<Utc>, u32)>,
    /// Lines dropped for being too long, not yet reported.
    pub long_lines_dropped: u64,
}

impl ApiLines {
    /// Starts fresh, or after the line at `resume` (a [`Position::Time`]).
    pub fn new(resume: Option<Position>) -> ApiLines {
        let skip = match resume {
            Some(Position::Time { time, seen_at_time }) => Some((time, seen_at_time)),
            _ => None,
        };
        ApiLines {
            pending: Default::default(),
            recent: Default::default(),
            repeats_dropped: 0,
            last: skip,
            skip,
            long_lines_dropped: 0,
        }
    }

    /// Where to ask Docker to start (`since`, whole seconds): the second of the last line
    /// handed on, since lines of that second may not all have been read.
    pub fn since(&self) -> Option<DateTime<Utc>> {
        self.last.map(|(time, _)| time)
    }

    /// Forgets lines in progress, for a new request that sends everything since
    /// [`ApiLines::since`] again (what was handed on is skipped by time).
    pub fn restart(&mut self) {
        self.pending = Default::default();
        self.skip = self.last;
    }

    /// Takes one frame of `stream`; whole lines go to `out`.
    pub fn push_frame(&mut self, stream: Stream, frame: &[u8], out: &mut Vec<RawLine>) {
        let (time, mut body) = split_time(frame);
        let slot = stream_index(stream);
        while !body.is_empty() {
            let pending = &mut self.pending[slot];
            if pending.bytes.is_empty() && !pending.discarding && pending.time.is_none() {
                pending.time = time;
            }
            let (piece, complete) = match body.iter().position(|&b| b == b'\n') {
                Some(end) => (&body[..end], true),
                None => (body, false),
            };
            body = if complete {
                &body[piece.len() + 1..]
            } else {
                &[]
            };
            if !pending.discarding {
                if pending.bytes.len() + piece.len() > MAX_LINE_BYTES {
                    pending.bytes = Vec::new();
                    pending.discarding = true;
                    self.long_lines_dropped += 1;
                } else {
                    pending.bytes.extend_from_slice(piece);
                }
            }
            if complete {
                self.finish(slot, stream, out);
            }
        }
    }

    /// Hands on what is left of unfinished lines: the stream ended (the container stopped),
    /// so no newline will come.
    pub fn flush(&mut self, out: &mut Vec<RawLine>) {
        for (slot, stream) in [(0, Stream::Stdout), (1, Stream::Stderr)] {
            let pending = &self.pending[slot];
            if !pending.bytes.is_empty() && !pending.discarding {
                self.finish(slot, stream, out);
            } else {
                self.pending[slot] = Pending::default();
            }
        }
    }

    fn finish(&mut self, slot: usize, stream: Stream, out: &mut Vec<RawLine>) {
        let pending = std::mem::take(&mut self.pending[slot]);
        if pending.discarding {
            return;
        }
        let Some(time) = pending.time else {
            // No time (Docker always sends one when asked): hand on the bare message, with
            // no position to resume from.
            out.push(RawLine {
                text: String::from_utf8_lossy(&pending.bytes).into_owned(),
                position: None,
            });
            return;
        };
        let fingerprint = (time, {
            let mut hasher = DefaultHasher::new();
            pending.bytes.hash(&mut hasher);
            hasher.finish()
        });
        let recent = &mut self.recent[slot];
        if recent.contains(&fingerprint) {
            self.repeats_dropped += 1;
            return;
        }
        if let Some((skip_time, remaining)) = self.skip {
            if time < skip_time {
                return;
            }
            if time == skip_time && remaining > 0 {
                self.skip = Some((skip_time, remaining - 1));
                return;
            }
            self.skip = None;
        }
        let seen_at_time = match self.last {
            Some((last, seen)) if last == time => seen.saturating_add(1),
            _ => 1,
        };
        self.last = Some((time, seen_at_time));
        if recent.len() == RECENT_LINES {
            recent.pop_front();
        }
        recent.push_back(fingerprint);
        let stream_name = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        let message = String::from_utf8_lossy(&pending.bytes);
        out.push(RawLine {
            text: format!(
                "{} {stream_name} F {message}",
                time.to_rfc3339_opts(SecondsFormat::Nanos, true)
            ),
            position: Some(Position::Time { time, seen_at_time }),
        });
    }
}

fn stream_index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// Splits `TIME ` off the front of a frame.
fn split_time(frame: &[u8]) -> (Option<DateTime<Utc>>, &[u8]) {
    let Some(space) = frame.iter().take(40).position(|&b| b == b' ') else {
        return (None, frame);
    };
    let parsed = std::str::from_utf8(&frame[..space])
        .ok()
        .filter(|stamp| stamp.starts_with(|c: char| c.is_ascii_digit()))
        .and_then(|stamp| DateTime::parse_from_rfc3339(stamp).ok());
    match parsed {
        Some(time) => (Some(time.with_timezone(&Utc)), &frame[space + 1..]),
        None => (None, frame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::envelope::Decoder;

    const T1: &str = "2026-11-26T07:00:01.000000001Z";
    const T2: &str = "2026-11-26T07:00:02.5Z";

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn frames(lines: &mut ApiLines, frames: &[(Stream, &str)]) -> Vec<RawLine> {
        let mut out = Vec::new();
        for (stream, frame) in frames {
            lines.push_frame(*stream, frame.as_bytes(), &mut out);
        }
        out
    }

    fn texts(lines: &[RawLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn whole_lines_become_cri_lines_the_decoder_reads_with_their_time() {
        let mut lines = ApiLines::new(None);
        let out = frames(
            &mut lines,
            &[
                (
                    Stream::Stderr,
                    &format!("{T1} Failed password for root from 10.0.0.2 port 22 ssh2\r\n"),
                ),
                (Stream::Stdout, &format!("{T2} hello\n")),
            ],
        );
        assert_eq!(
            texts(&out),
            [
                "2026-11-26T07:00:01.000000001Z stderr F Failed password for root from 10.0.0.2 port 22 ssh2\r",
                "2026-11-26T07:00:02.500000000Z stdout F hello",
            ]
        );
        let mut decoder = Decoder::new();
        let record = decoder.push(&out[0].text).unwrap();
        assert_eq!(
            record.text,
            "Failed password for root from 10.0.0.2 port 22 ssh2"
        );
        assert_eq!(record.time, Some(time(T1)));
        assert_eq!(record.stream, Some(Stream::Stderr));
        assert_eq!(
            out[1].position,
            Some(Position::Time {
                time: time(T2),
                seen_at_time: 1
            })
        );
    }

    #[test]
    fn pieces_are_joined_per_stream_with_the_first_pieces_time() {
        let mut lines = ApiLines::new(None);
        let out = frames(
            &mut lines,
            &[
                (Stream::Stdout, &format!("{T1} first half ")),
                (Stream::Stderr, &format!("{T1} other stream\n")),
                (Stream::Stdout, &format!("{T2} second half\n")),
            ],
        );
        assert_eq!(
            texts(&out),
            [
                "2026-11-26T07:00:01.000000001Z stderr F other stream",
                "2026-11-26T07:00:01.000000001Z stdout F first half second half",
            ]
        );
    }

    #[test]
    fn several_lines_in_one_frame_and_a_tty_frame_without_newline_at_the_end() {
        let mut lines = ApiLines::new(None);
        let mut out = frames(&mut lines, &[(Stream::Stdout, &format!("{T1} a\nb\nc"))]);
        assert_eq!(
            texts(&out),
            [&format!("{T1} stdout F a"), &format!("{T1} stdout F b")]
        );
        lines.flush(&mut out);
        assert_eq!(out[2].text, format!("{T1} stdout F c"));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced() {
        let mut lines = ApiLines::new(None);
        let mut out = Vec::new();
        let mut frame = format!("{T1} bad \u{0}").into_bytes();
        frame.extend_from_slice(&[0xff, 0xfe, b'\n']);
        lines.push_frame(Stream::Stdout, &frame, &mut out);
        assert_eq!(
            out[0].text,
            format!("{T1} stdout F bad \u{0}\u{fffd}\u{fffd}")
        );
    }

    #[test]
    fn a_line_longer_than_the_limit_is_dropped_whole() {
        let mut lines = ApiLines::new(None);
        let big = "x".repeat(MAX_LINE_BYTES / 2 + 1);
        let out = frames(
            &mut lines,
            &[
                (Stream::Stdout, &format!("{T1} {big}")),
                (Stream::Stdout, &format!("{T1} {big}")),
                (Stream::Stdout, &format!("{T1} from 6.6.6.6 port 22\n")),
                (Stream::Stdout, &format!("{T2} next\n")),
            ],
        );
        assert_eq!(
            texts(&out),
            ["2026-11-26T07:00:02.500000000Z stdout F next"]
        );
        assert_eq!(lines.long_lines_dropped, 1);
    }

    #[test]
    fn lines_with_the_same_time_are_counted_and_skipped_on_resume() {
        let all = [
            (Stream::Stdout, format!("{T1} one\n")),
            (Stream::Stdout, format!("{T2} two\n")),
            (Stream::Stdout, format!("{T2} three\n")),
            (Stream::Stdout, format!("{T2} four\n")),
        ];
        let all: Vec<(Stream, &str)> = all.iter().map(|(s, f)| (*s, f.as_str())).collect();
        let mut first_run = ApiLines::new(None);
        let out = frames(&mut first_run, &all[..3]);
        let resume = out.last().unwrap().position.clone();
        assert_eq!(
            resume,
            Some(Position::Time {
                time: time(T2),
                seen_at_time: 2
            })
        );
        // A new run asks for everything since that second again.
        let mut second_run = ApiLines::new(resume);
        assert_eq!(second_run.since(), Some(time(T2)));
        let out = frames(&mut second_run, &all);
        assert_eq!(
            texts(&out),
            ["2026-11-26T07:00:02.500000000Z stdout F four"]
        );
        assert_eq!(
            out[0].position,
            Some(Position::Time {
                time: time(T2),
                seen_at_time: 3
            })
        );
        // A reconnect within the same run does the same.
        second_run.restart();
        assert!(frames(&mut second_run, &all).is_empty());
    }

    #[test]
    fn a_line_docker_sends_again_at_rotation_is_dropped() {
        let mut lines = ApiLines::new(None);
        let out = frames(
            &mut lines,
            &[
                (Stream::Stdout, &format!("{T1} line 26\n")),
                (Stream::Stdout, &format!("{T1} line 26\n")),
                (Stream::Stderr, &format!("{T1} line 26\n")),
                (Stream::Stdout, &format!("{T1} same time, other text\n")),
                (Stream::Stdout, &format!("{T2} line 27\n")),
            ],
        );
        assert_eq!(
            texts(&out),
            [
                "2026-11-26T07:00:01.000000001Z stdout F line 26",
                "2026-11-26T07:00:01.000000001Z stderr F line 26",
                "2026-11-26T07:00:01.000000001Z stdout F same time, other text",
                "2026-11-26T07:00:02.500000000Z stdout F line 27",
            ]
        );
        assert_eq!(lines.repeats_dropped, 1);
    }

    #[test]
    fn a_frame_without_time_is_handed_on_bare() {
        let mut lines = ApiLines::new(None);
        let out = frames(&mut lines, &[(Stream::Stdout, "no time here\n")]);
        assert_eq!(texts(&out), ["no time here"]);
        assert_eq!(out[0].position, None);
    }
}
