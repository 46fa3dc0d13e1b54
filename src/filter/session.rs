//! Fail2Ban's multi-line failures (`<F-MLFID>`): what the earlier lines of one session said.
//!
//! sshd says who connects on one line (`Connection from ADDR`, a PAM line with `rhost=ADDR`)
//! and that the session failed on a later one that names no address (`Disconnecting: Too many
//! authentication failures`). A Fail2Ban filter marks the session's id with `<F-MLFID>` (for
//! sshd, the `sshd[PID]` prefix); lines of the same id share what they captured. `<F-NOFAIL>`
//! lines are remembered but not counted, `<F-MLFFORGET>` ends the session, and a session with
//! a pending host-less failure, or with attempts on several users, turns the next line into a
//! failure even where it says otherwise (Fail2Ban's rules, so its filters mean the same here).
//!
//! State is per source and per filter, bounded in count and age: an attacker who opens
//! sessions without end only pushes the oldest out.
//!
//! The same per-source state holds the last lines of a filter with `maxlines` above 1
//! (Fail2Ban's multi-line failregexes, such as mongodb's `Failed to authenticate` line and the
//! `end connection ADDR` line of the same connection): at most `maxlines` of them, each as long
//! as a line may be.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use chrono::{DateTime, Duration, Utc};

/// Sessions kept at most per source and filter (Fail2Ban keeps as many).
const MAX_SESSIONS: usize = 1000;
/// A session unheard of for this long is forgotten (Fail2Ban's default too).
const MAX_AGE_MINUTES: i64 = 10;
/// Users remembered per session: two are enough to know there were several.
const MAX_USERS: usize = 4;

/// Which session a line belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// The syslog program and pid, which logjail's envelope took off the line where Fail2Ban's
    /// `<F-MLFID>` would have captured them.
    pub program: Option<String>,
    pub pid: Option<u32>,
    /// What `<F-MLFID>` captured in the rest of the line.
    pub id: String,
}

/// What one matching line captured, and how its filter marked it.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub host: Option<String>,
    pub user: Option<String>,
    /// `<F-NOFAIL>` or `<F-MLFGAINED>`: remembered, not counted.
    pub nofail: bool,
    /// `<F-MLFFORGET>`: the session ends with this line.
    pub forget: bool,
}

/// A line's meaning once merged with its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// A failure of this host (and user).
    Failure { host: String, user: Option<String> },
    /// Not counted: a marked line, or one waiting for its session's address.
    Nothing,
}

#[derive(Debug, Clone)]
struct Session {
    host: Option<String>,
    user: Option<String>,
    users: Vec<String>,
    /// A failure without address came: the next line of the session counts.
    pending: bool,
    seen: DateTime<Utc>,
}

/// The sessions of one source, for one filter.
#[derive(Debug, Default)]
pub struct Sessions {
    map: HashMap<SessionKey, Session>,
    /// A multi-line filter's last lines (date cut out), oldest first.
    lines: VecDeque<String>,
}

impl Sessions {
    pub fn new() -> Sessions {
        Sessions::default()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Merges a matching line into its session and says whether it is a failure.
    pub fn merge(&mut self, key: SessionKey, seen: Seen, now: DateTime<Utc>) -> Merged {
        let mut nofail = seen.nofail;
        let (host, user) = match self.map.get_mut(&key) {
            Some(session) => {
                // An empty capture (`ruser=`) names nobody: counted, it would make the session
                // look like attempts on several users.
                if let Some(user) = &seen.user
                    && !user.is_empty()
                    && !session.users.contains(user)
                    && session.users.len() < MAX_USERS
                {
                    session.users.push(user.clone());
                }
                if seen.host.is_some() {
                    session.host.clone_from(&seen.host);
                }
                if seen.user.is_some() {
                    session.user.clone_from(&seen.user);
                }
                session.seen = now;
                if std::mem::take(&mut session.pending) || session.users.len() > 1 {
                    nofail = false;
                }
                let merged = (session.host.clone(), session.user.clone());
                if seen.forget {
                    self.map.remove(&key);
                }
                merged
            }
            None => {
                if !seen.forget {
                    self.make_room(now);
                    self.map.insert(
                        key.clone(),
                        Session {
                            host: seen.host.clone(),
                            user: seen.user.clone(),
                            users: seen
                                .user
                                .iter()
                                .filter(|u| !u.is_empty())
                                .cloned()
                                .collect(),
                            pending: false,
                            seen: now,
                        },
                    );
                }
                (seen.host, seen.user)
            }
        };
        let Some(host) = host else {
            if let Some(session) = self.map.get_mut(&key) {
                session.pending = true;
            }
            return Merged::Nothing;
        };
        if nofail {
            return Merged::Nothing;
        }
        Merged::Failure { host, user }
    }

    /// Adds a line to the buffer of the last `maxlines` lines and gives them joined as Fail2Ban
    /// joins them: each ends with `\n`.
    pub fn push_line(&mut self, line: &str, maxlines: usize) -> String {
        self.lines.push_back(line.to_string());
        while self.lines.len() > maxlines.max(1) {
            self.lines.pop_front();
        }
        let mut joined = String::with_capacity(self.lines.iter().map(|l| l.len() + 1).sum());
        for line in &self.lines {
            joined.push_str(line);
            joined.push('\n');
        }
        joined
    }

    /// After a prefregex took its content out of the joined lines, that content alone is
    /// the buffer (Fail2Ban's way).
    pub fn replace_lines(&mut self, content: &str) {
        self.lines.clear();
        self.lines
            .push_back(content.trim_end_matches('\n').to_string());
    }

    /// Drops the buffered lines a failure's match touched (`matched`: a range of the text
    /// [`Sessions::push_line`] gave), except those its `<SKIPLINES>` part (`skipped`) passed
    /// over: they may still be part of another failure.
    pub fn forget_matched(&mut self, matched: Range<usize>, skipped: Option<Range<usize>>) {
        // An empty match still touches the line it is in.
        let matched_end = matched.end.max(matched.start + 1);
        let mut start = 0;
        self.lines.retain(|line| {
            let range = start..start + line.len() + 1;
            start = range.end;
            let touched = range.start < matched_end && matched.start < range.end;
            let passed_over = skipped
                .as_ref()
                .is_some_and(|skip| skip.start <= range.start && range.end <= skip.end);
            !touched || passed_over
        });
    }

    /// How many lines wait in the multi-line buffer.
    pub fn buffered_lines(&self) -> usize {
        self.lines.len()
    }

    /// Drops sessions that went quiet, then the oldest if there are still too many.
    fn make_room(&mut self, now: DateTime<Utc>) {
        if self.map.len() < MAX_SESSIONS {
            return;
        }
        let oldest_kept = now - Duration::minutes(MAX_AGE_MINUTES);
        self.map.retain(|_, session| session.seen >= oldest_kept);
        while self.map.len() >= MAX_SESSIONS {
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, session)| session.seen)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            self.map.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn key(pid: u32) -> SessionKey {
        SessionKey {
            program: Some("sshd".into()),
            pid: Some(pid),
            id: String::new(),
        }
    }

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 7, 0, second).unwrap()
    }

    fn seen(host: Option<&str>, user: Option<&str>, nofail: bool, forget: bool) -> Seen {
        Seen {
            host: host.map(String::from),
            user: user.map(String::from),
            nofail,
            forget,
        }
    }

    #[test]
    fn a_later_line_gets_the_address_of_its_session() {
        let mut sessions = Sessions::new();
        // `Connection from ADDR` (no failure), then a failure that names no address.
        assert_eq!(
            sessions.merge(key(1), seen(Some("192.0.2.1"), None, true, false), at(0)),
            Merged::Nothing
        );
        assert_eq!(
            sessions.merge(key(1), seen(None, Some("root"), false, false), at(1)),
            Merged::Failure {
                host: "192.0.2.1".into(),
                user: Some("root".into())
            }
        );
        // Another session of the same program learns nothing from it.
        assert_eq!(
            sessions.merge(key(2), seen(None, Some("root"), false, false), at(1)),
            Merged::Nothing
        );
    }

    #[test]
    fn a_pending_failure_or_a_second_user_makes_the_next_line_count() {
        let mut sessions = Sessions::new();
        assert_eq!(
            sessions.merge(key(1), seen(None, None, false, false), at(0)),
            Merged::Nothing
        );
        // The address comes with a line marked as no failure: the pending one counts.
        assert_eq!(
            sessions.merge(key(1), seen(Some("192.0.2.2"), None, true, false), at(1)),
            Merged::Failure {
                host: "192.0.2.2".into(),
                user: None
            }
        );
        let mut sessions = Sessions::new();
        sessions.merge(
            key(3),
            seen(Some("192.0.2.3"), Some("a"), true, false),
            at(0),
        );
        assert!(matches!(
            sessions.merge(
                key(3),
                seen(Some("192.0.2.3"), Some("b"), true, false),
                at(1)
            ),
            Merged::Failure { .. }
        ));
    }

    #[test]
    fn forget_ends_the_session_and_the_count_is_bounded() {
        let mut sessions = Sessions::new();
        sessions.merge(key(1), seen(Some("192.0.2.1"), None, true, false), at(0));
        sessions.merge(key(1), seen(None, None, true, true), at(1));
        assert!(sessions.is_empty());
        for pid in 0..(MAX_SESSIONS as u32 + 50) {
            sessions.merge(key(pid), seen(Some("192.0.2.1"), None, true, false), at(0));
        }
        assert!(sessions.len() <= MAX_SESSIONS);
    }

    #[test]
    fn the_line_buffer_keeps_maxlines_and_forgets_what_a_failure_matched() {
        let mut sessions = Sessions::new();
        for line in ["a", "b", "c"] {
            sessions.push_line(line, 2);
        }
        let joined = sessions.push_line("d", 3);
        assert_eq!(joined, "b\nc\nd\n");
        // A match over `b` and `d` that skipped `c`: `c` stays, for a later failure.
        let matched = 0..joined.len() - 1;
        let skipped = 2..4;
        assert_eq!(&joined[skipped.clone()], "c\n");
        sessions.forget_matched(matched, Some(skipped));
        assert_eq!(sessions.push_line("e", 3), "c\ne\n");
        // A match inside one line takes that line only.
        sessions.push_line("f", 3);
        sessions.forget_matched(2..3, None);
        assert_eq!(sessions.push_line("g", 3), "c\nf\ng\n");
        sessions.replace_lines("content");
        assert_eq!(sessions.buffered_lines(), 1);
    }
}
