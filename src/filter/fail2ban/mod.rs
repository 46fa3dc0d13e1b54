//! Fail2Ban filter files (`filter.d/NAME.conf` with its `.local`, its includes and the jail's
//! filter options) read into a logjail [`FilterSpec`], so the jail pipeline runs them like any
//! other filter.
//!
//! Reading ([`read`]) goes through Fail2Ban's INI rules ([`crate::config::ini`]): `[INCLUDES]`,
//! `[DEFAULT]`, `[Definition]`, `[Init]`, `%(name)s`. Then Fail2Ban's own `<tag>` substitution
//! and the rewrite of Python `re` syntax ([`translate`]). What logjail does differently is said
//! in [`Fail2BanFilter::notes`]:
//!
//! - A whole syslog line is judged as Fail2Ban does: date cut out, the rest with its host and
//!   `prog[pid]:` through common.conf's `__prefix_line`. A bare message (the journal, container
//!   output) is judged with `__prefix_line` read without its host and daemon parts, which
//!   would otherwise eat the message's first word; the daemon name (`_daemon`) becomes the
//!   filter's `program`, checked against the journal's or the tag's.
//! - Sessions (`<F-MLFID>`, with `<F-NOFAIL>`, `<F-MLFFORGET>`, `<F-MLFGAINED>`) are kept per
//!   source by [`crate::filter::session`]; the syslog program and pid, which the envelope
//!   removes, are part of the session's id. `maxlines` above 1 (patterns spanning several
//!   lines, `<SKIPLINES>`) runs the failregexes on the source's last lines joined, kept in the
//!   same per-source state.
//! - A `datepattern` logjail's date module cannot express falls back to its default date
//!   detection.
//! - Host names are never resolved: `<HOST>` captures addresses only.

pub mod translate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::ini::{IniError, IniStack, Options, RawValue, SourceLine};

use super::date::Fail2BanDate;
use super::{CutDate, FilterField, FilterSpec};

/// The section a filter's patterns live in.
const DEFINITION: &str = "Definition";
/// The section with the defaults of a filter's options (`mode = normal`).
const INIT: &str = "Init";

/// The most lines a multi-line filter (`maxlines`) is given together; Debian's stock filters
/// ask for 20 at most.
const MAX_LINES: usize = 50;

/// common.conf's `__prefix_line`, which picks a per-log-type prefix.
const COMMON_PREFIX_LINE: &str = "<lt_<logtype>/__prefix_line>";
/// What is left of that prefix once logjail's envelope has removed the syslog header: the
/// empty `[]` a cut date leaves, a kernel stamp, a Solaris `[ID …]` tag.
const HEADERLESS_PREFIX_LINE: &str =
    r"<__date_ambit>?\s*(?:<__kernel_prefix>\s+)?(?:<__daemon_extra_re>\s+)?";

/// A Fail2Ban filter file, read.
#[derive(Debug, Clone)]
pub struct Fail2BanFilter {
    /// The filter as logjail runs it.
    pub spec: FilterSpec,
    /// `journalmatch`, for jails that read the journal.
    pub journalmatch: Option<String>,
    /// Where each of `spec.failregex` was written.
    pub failregex_at: Vec<SourceLine>,
    /// Where each of `spec.ignoreregex` was written.
    pub ignoreregex_at: Vec<SourceLine>,
    /// Where the prefregex and the datepattern were written.
    pub prefregex_at: Option<SourceLine>,
    pub datepattern_at: Option<SourceLine>,
    /// Where logjail reads the file differently from Fail2Ban, one sentence each.
    pub notes: Vec<String>,
    /// Every file read, in order.
    pub files: Vec<Arc<Path>>,
}

impl Fail2BanFilter {
    /// Where the pattern a compile error names was written.
    pub fn locate(&self, field: FilterField) -> Option<&SourceLine> {
        match field {
            FilterField::Failregex(i) => self.failregex_at.get(i),
            FilterField::Ignoreregex(i) => self.ignoreregex_at.get(i),
            FilterField::Prefregex => self.prefregex_at.as_ref(),
            FilterField::Datepattern => self.datepattern_at.as_ref(),
            FilterField::Program => None,
        }
    }
}

/// Why a Fail2Ban filter file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fail2BanFilterError {
    #[error("{0}")]
    Ini(#[from] IniError),
    #[error("{path}: not found")]
    Missing { path: String },
    #[error("{path}: no [Definition] section, so no filter")]
    NoDefinition { path: String },
    #[error("{path}: [Definition] has no failregex")]
    NoFailregex { path: String },
    #[error("{at}: {option}: {message}")]
    Tag {
        at: SourceLine,
        option: String,
        message: String,
    },
}

/// Reads the filter file `path` (with its `.local` sibling and includes) as a jail with
/// `options` (`mode=aggressive`, …) would use it.
///
/// A filter built on common.conf's `__prefix_line` is read twice: for whole log lines (a
/// syslog file), where Fail2Ban's prefix takes the host and `prog[pid]:` as it does there, and
/// for bare messages (the journal, container output), where that prefix would take the
/// message's first words for a host name and is read without them.
pub fn read(
    path: &Path,
    options: &[(String, String)],
) -> Result<Fail2BanFilter, Fail2BanFilterError> {
    let (mut filter, adapted) = read_for(path, options, Prefix::BareMessage)?;
    if adapted {
        let (whole, _) = read_for(path, options, Prefix::WholeLine)?;
        filter.spec.line_variant = Some(Box::new(whole.spec));
    }
    Ok(filter)
}

/// What a filter's `__prefix_line` is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    WholeLine,
    BareMessage,
}

/// [`read`] for one kind of text; also says whether `__prefix_line` was adapted to bare
/// messages.
fn read_for(
    path: &Path,
    options: &[(String, String)],
    prefix: Prefix,
) -> Result<(Fail2BanFilter, bool), Fail2BanFilterError> {
    let display = path.display().to_string();
    let local = path.with_extension("local");
    if !path.is_file() && !local.is_file() {
        return Err(Fail2BanFilterError::Missing { path: display });
    }
    let files: Vec<PathBuf> = if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        vec![local]
    };
    let stack = IniStack::read_files(&files)?;
    if !stack.has_section(DEFINITION) {
        return Err(Fail2BanFilterError::NoDefinition { path: display });
    }
    let mut notes = Vec::new();

    // The options a jail hands the filter override [Init], which overrides [Definition].
    let given_at = SourceLine {
        file: Arc::from(Path::new("(filter options)")),
        line: 0,
    };
    let mut vars = Options::default();
    if let Some(init) = stack.own_options(INIT) {
        for (name, value) in init.iter() {
            vars.set(name, value.clone());
        }
    }
    for (name, value) in options {
        vars.set(
            &name.to_lowercase(),
            RawValue {
                text: value.clone(),
                at: given_at.clone(),
            },
        );
    }
    let mut adapted = false;
    if vars.get("__prefix_line").is_none()
        && prefix == Prefix::BareMessage
        && let Some(raw) = stack.raw(DEFINITION, "__prefix_line")
    {
        // common.conf's prefix, or a filter's own that extends it (sendmail's queue id after
        // `%(known/__prefix_line)s`): the common part is what the envelope removed.
        let known = "%(known/__prefix_line)s";
        let headerless = if raw.text == COMMON_PREFIX_LINE {
            Some(HEADERLESS_PREFIX_LINE.to_string())
        } else if raw.text.contains(known)
            && stack
                .known_raw(DEFINITION, "__prefix_line")
                .is_some_and(|earlier| earlier.text == COMMON_PREFIX_LINE)
        {
            Some(raw.text.replace(known, HEADERLESS_PREFIX_LINE))
        } else {
            None
        };
        if let Some(text) = headerless {
            adapted = true;
            vars.set(
                "__prefix_line",
                RawValue {
                    text,
                    at: raw.at.clone(),
                },
            );
        }
    }

    let lookup = |name: &str| -> Option<String> {
        let (section, option) = match name.split_once('/') {
            Some((section, option)) => (section, option),
            None => (DEFINITION, name),
        };
        stack
            .get_with(section, option, &vars)
            .ok()
            .flatten()
            .map(|v| v.text)
    };
    let value = |option: &str| -> Result<Option<(String, SourceLine, usize)>, Fail2BanFilterError> {
        let Some(got) = stack.get_with(DEFINITION, option, &vars)? else {
            return Ok(None);
        };
        let text = translate::substitute_tags(&got.text, &lookup).map_err(|message| {
            Fail2BanFilterError::Tag {
                at: got.at.clone(),
                option: option.to_string(),
                message,
            }
        })?;
        // Lines of a multi-line value map to file lines only when interpolation kept them.
        let raw_lines = vars
            .get(option)
            .or_else(|| stack.raw(DEFINITION, option))
            .map_or(0, |raw| raw.text.lines().count());
        Ok(Some((text, got.at, raw_lines)))
    };
    let lines_of = |option: &str| -> Result<Vec<(String, SourceLine)>, Fail2BanFilterError> {
        let Some((text, at, raw_lines)) = value(option)? else {
            return Ok(Vec::new());
        };
        let same_shape = text.lines().count() == raw_lines;
        Ok(text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(index, line)| {
                let line_at = SourceLine {
                    file: at.file.clone(),
                    line: if same_shape { at.line + index } else { at.line },
                };
                (translate::python_to_rust(line.trim()), line_at)
            })
            .collect())
    };

    let mut spec = FilterSpec {
        description: Some(format!("Fail2Ban filter {display}")),
        ..FilterSpec::default()
    };
    let mut failregex_at = Vec::new();
    let mut ignoreregex_at = Vec::new();
    let prefregex = value("prefregex")?;
    let prefix_has_host = prefregex
        .as_ref()
        .is_some_and(|(text, _, _)| names_an_address(text));
    let sessions = prefregex
        .as_ref()
        .is_some_and(|(text, _, _)| text.contains("<F-MLFID>"));
    for (pattern, at) in lines_of("failregex")? {
        let pattern_sessions = sessions || pattern.contains("<F-MLFID>");
        if !prefix_has_host && !names_an_address(&pattern) && !pattern_sessions {
            notes.push(format!(
                "{at}: a failregex without <HOST> and without a session (<F-MLFID>) to take \
                 the address from is left out"
            ));
        } else {
            spec.failregex.push(pattern);
            failregex_at.push(at);
        }
    }
    for (pattern, at) in lines_of("ignoreregex")? {
        spec.ignoreregex.push(pattern);
        ignoreregex_at.push(at);
    }
    if spec.failregex.is_empty() {
        return Err(Fail2BanFilterError::NoFailregex { path: display });
    }
    let mut prefregex_at = None;
    if let Some((text, at, _)) = prefregex
        && !text.trim().is_empty()
    {
        spec.prefregex = Some(translate::python_to_rust(text.trim()));
        prefregex_at = Some(at);
    }
    let mut datepattern_at = None;
    let mut cut = CutDate::default();
    if let Some((text, at, _)) = value("datepattern")? {
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if Fail2BanDate::new(line).is_some() {
                cut.patterns.push(line.to_string());
            } else {
                notes.push(format!(
                    "{at}: datepattern `{line}` is beyond logjail's date reader; the next \
                     pattern, or Fail2Ban's default date detection, finds the date instead"
                ));
            }
        }
        datepattern_at = Some(at);
    }
    spec.cut_date = Some(cut);
    if let Some(daemon) = lookup("_daemon")
        && names_a_program(&daemon)
    {
        spec.program = Some(daemon);
    }
    let journalmatch = value("journalmatch")?
        .map(|(text, _, _)| text.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|text| !text.is_empty());
    if let Some((text, at, _)) = value("maxlines")?
        && let Ok(maxlines) = text.trim().parse::<usize>()
        && maxlines > 1
    {
        // Every source keeps that many lines per filter: bounded, whatever the file says.
        if maxlines > MAX_LINES {
            notes.push(format!(
                "{at}: maxlines = {maxlines}: logjail keeps at most {MAX_LINES} lines per source"
            ));
        }
        spec.maxlines = Some(maxlines.min(MAX_LINES));
    }
    Ok((
        Fail2BanFilter {
            spec,
            journalmatch,
            failregex_at,
            ignoreregex_at,
            prefregex_at,
            datepattern_at,
            notes,
            files: stack.files().to_vec(),
        },
        adapted,
    ))
}

/// Whether a pattern captures an address with one of the engine's tags.
fn names_an_address(pattern: &str) -> bool {
    ["<HOST>", "<ADDR>", "<IP4>", "<IP6>"]
        .iter()
        .any(|tag| pattern.contains(tag))
}

/// Whether `_daemon` names programs rather than matching any word: it compiles and does not
/// match a made-up name.
fn names_a_program(daemon: &str) -> bool {
    let daemon = daemon.trim();
    if daemon.is_empty() {
        return false;
    }
    regex::Regex::new(&format!("^(?:{daemon})$"))
        .is_ok_and(|regex| !regex.is_match("logjail-made-up-program-name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_names() {
        assert!(names_a_program("sshd"));
        assert!(names_a_program("(?:dovecot(?:-auth)?|auth)"));
        assert!(!names_a_program("\\S*"));
        assert!(!names_a_program(""));
        assert!(!names_a_program("(unclosed"));
    }

    fn judge(filter: &crate::filter::Filter, line: &str) -> crate::filter::Verdict {
        let now = chrono::Utc::now();
        let mut decoder = crate::filter::envelope::Decoder::new();
        let record = decoder.push_at(line, now).unwrap();
        filter.evaluate_at(&record, now)
    }

    fn host(filter: &crate::filter::Filter, line: &str) -> Option<String> {
        match judge(filter, line) {
            crate::filter::Verdict::Failure(f) => Some(f.host.to_string()),
            _ => None,
        }
    }

    #[test]
    fn debian_sshd_follows_a_session_to_its_failure() {
        use crate::filter::Verdict;
        use crate::filter::envelope::Decoder;
        use crate::filter::session::Sessions;
        let path = Path::new("/etc/fail2ban/filter.d/sshd.conf");
        let filter =
            crate::filter::Filter::compile("sshd", &read(path, &[]).unwrap().spec).unwrap();
        assert!(filter.uses_sessions());
        let now = chrono::Utc::now();
        let mut sessions = Sessions::new();
        let mut judge_in = |line: &str| {
            let mut decoder = Decoder::new();
            let record = decoder.push_at(line, now).unwrap();
            filter.evaluate_in(&record, now, Some(&mut sessions))
        };
        // Rejected keys are no failure by themselves (a client tries several)...
        for _ in 0..2 {
            assert!(matches!(
                judge_in(
                    "Nov 28 09:16:05 srv sshd[32310]: Failed publickey for git from 192.0.2.111 port 57910 ssh2: RSA 14:ba"
                ),
                Verdict::Missed
            ));
        }
        // ...until the session ends without success, on a line that names no address.
        let Verdict::Failure(failure) = judge_in(
            "Nov 28 09:16:05 srv sshd[32310]: Disconnecting: Too many authentication failures for git [preauth]",
        ) else {
            panic!("the session's address was not carried over");
        };
        assert_eq!(failure.host.to_string(), "192.0.2.111");
        assert_eq!(failure.user.as_deref(), Some("git"));
        // Another sshd process is another session: its line alone names nobody.
        assert!(matches!(
            judge_in(
                "Nov 28 09:16:06 srv sshd[32311]: Disconnecting: Too many authentication failures for git [preauth]"
            ),
            Verdict::Missed
        ));
        // Container output (`sshd -e`) carries no pid: its lines are never joined, so that
        // one client's failure cannot take the address another logged in from.
        judge_in("Nov 28 09:16:07 srv sshd: Accepted password for bob from 192.0.2.50 port 1 ssh2");
        for line in [
            "Disconnecting: Too many authentication failures for git [preauth]",
            "Nov 28 09:16:08 srv sshd: Disconnecting: Too many authentication failures for git [preauth]",
        ] {
            assert!(matches!(judge_in(line), Verdict::Missed), "{line}");
        }
        let json = r#"{"log":"Failed publickey for git from 192.0.2.112 port 57910 ssh2: RSA 14:ba\n","stream":"stderr","time":"2026-11-26T07:00:01Z"}"#;
        assert!(matches!(judge_in(json), Verdict::Missed));
        // Judged alone, the same failure line has no address either.
        assert_eq!(
            host(
                &filter,
                "Nov 28 09:16:05 srv sshd[32310]: Disconnecting: Too many authentication failures for git [preauth]"
            ),
            None
        );
    }

    #[test]
    fn debian_sshd_in_both_modes() {
        let path = Path::new("/etc/fail2ban/filter.d/sshd.conf");
        let normal = read(path, &[]).unwrap();
        assert_eq!(normal.spec.program.as_deref(), Some("sshd"));
        assert!(normal.spec.prefregex.is_some());
        assert_eq!(
            normal.journalmatch.as_deref(),
            Some("_SYSTEMD_UNIT=sshd.service + _COMM=sshd")
        );
        assert!(normal.files.iter().any(|f| f.ends_with("common.conf")));
        let filter = crate::filter::Filter::compile("sshd", &normal.spec).unwrap();
        assert!(!filter.fallbacks().is_empty());
        let line =
            "Nov 26 07:00:01 web sshd[42]: Failed password for root from 192.0.2.7 port 22 ssh2";
        assert_eq!(host(&filter, line).as_deref(), Some("192.0.2.7"));
        let invalid = "Nov 26 07:00:01 web sshd[42]: Invalid user admin from 192.0.2.8 port 22";
        assert_eq!(host(&filter, invalid).as_deref(), Some("192.0.2.8"));
        let other = "Nov 26 07:00:01 web cron[42]: Invalid user admin from 192.0.2.8 port 22";
        assert_eq!(host(&filter, other), None);
        let ddos =
            "Nov 26 07:00:01 web sshd[42]: Did not receive identification string from 192.0.2.9";
        assert_eq!(host(&filter, ddos), None);

        let aggressive = read(path, &[("mode".to_string(), "aggressive".to_string())]).unwrap();
        assert!(aggressive.spec.failregex.len() > normal.spec.failregex.len());
        let filter = crate::filter::Filter::compile("sshd", &aggressive.spec).unwrap();
        assert_eq!(host(&filter, ddos).as_deref(), Some("192.0.2.9"));
        // Lines point into the file that holds the pattern.
        assert!(
            aggressive
                .failregex_at
                .iter()
                .all(|at| at.file.ends_with("sshd.conf") && at.line > 1)
        );
    }

    #[test]
    fn a_prefix_extending_commons_reads_bare_messages_too() {
        // sendmail-reject's `__prefix_line` is common.conf's followed by a queue id: its
        // common part is what the envelope takes off a syslog line.
        let path = Path::new("/etc/fail2ban/filter.d/sendmail-reject.conf");
        let read = read(path, &[]).unwrap();
        assert!(read.spec.line_variant.is_some());
        let filter = crate::filter::Filter::compile("sendmail-reject", &read.spec).unwrap();
        let message = "ruleset=check_relay, arg1=[192.0.2.123], arg2=192.0.2.123, \
                       relay=[192.0.2.123], reject=421 4.3.2 Connection rate limit exceeded.";
        let now = chrono::Utc::now();
        let mut sessions = crate::filter::session::Sessions::new();
        let record =
            crate::filter::envelope::Record::from_parts(message, None, Some("sm-mta"), now);
        assert!(matches!(
            filter.evaluate_in(&record, now, Some(&mut sessions)),
            crate::filter::Verdict::Failure(f) if f.host.to_string() == "192.0.2.123"
        ));
        let line = format!("Feb 19 18:01:50 batman sm-mta[78152]: {message}");
        let mut decoder = crate::filter::envelope::Decoder::new();
        let record = decoder.push_at(&line, now).unwrap();
        assert!(matches!(
            filter.evaluate_in(&record, now, Some(&mut sessions)),
            crate::filter::Verdict::Failure(f) if f.host.to_string() == "192.0.2.123"
        ));
    }

    #[test]
    fn every_debian_filter_reads_and_compiles() {
        let mut read_ok = 0;
        let mut problems = Vec::new();
        for entry in std::fs::read_dir("/etc/fail2ban/filter.d").unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            // The `-common` files are only included by the others.
            if path.extension().is_none_or(|e| e != "conf") || name.ends_with("common") {
                continue;
            }
            match read(&path, &[]) {
                Ok(filter) => match crate::filter::Filter::compile(&name, &filter.spec) {
                    Ok(_) => read_ok += 1,
                    Err(errors) => problems.push(format!("{name}: {}", errors[0])),
                },
                Err(Fail2BanFilterError::NoFailregex { .. }) => {}
                Err(e) => problems.push(e.to_string()),
            }
        }
        assert!(read_ok > 70, "{read_ok} {problems:#?}");
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn multi_line_filters_join_a_sources_last_lines() {
        use crate::filter::Verdict;
        use crate::filter::envelope::Decoder;
        use crate::filter::session::Sessions;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("multi.conf");
        std::fs::write(
            &path,
            "[Definition]\n\
             failregex = ^\\[conn(?P<__id>\\d+)\\] auth failed<SKIPLINES>\\[conn(?P=__id)\\] end <HOST>$\n\
             \x20           ^second line of <HOST>\\n.*\\bdenied$\n\
             maxlines = 3\n",
        )
        .unwrap();
        let read = read(&path, &[]).unwrap();
        assert_eq!(read.spec.maxlines, Some(3));
        let filter = crate::filter::Filter::compile("multi", &read.spec).unwrap();
        assert!(filter.uses_sessions());
        let now = chrono::Utc::now();
        let mut sessions = Sessions::new();
        let mut judge_in = |line: &str| {
            let mut decoder = Decoder::new();
            let record = decoder.push_at(line, now).unwrap();
            match filter.evaluate_in(&record, now, Some(&mut sessions)) {
                Verdict::Failure(failure) => Some(failure.host.to_string()),
                _ => None,
            }
        };
        assert_eq!(judge_in("[conn7] auth failed"), None);
        assert_eq!(judge_in("[conn8] hello"), None);
        // The line that ends connection 7 completes its failure; connection 8's line was
        // passed over and stays.
        assert_eq!(
            judge_in("[conn7] end 192.0.2.7").as_deref(),
            Some("192.0.2.7")
        );
        // Lines further back than maxlines are gone: the earlier failure is not matched again.
        assert_eq!(judge_in("[conn7] end 192.0.2.7"), None);
        // A pattern with `\n` of its own spans two lines; `^` and `$` are each line's.
        assert_eq!(judge_in("second line of 192.0.2.9"), None);
        assert_eq!(judge_in("access denied").as_deref(), Some("192.0.2.9"));
        // Judged alone, with no source state, a line is only itself.
        let mut decoder = Decoder::new();
        let record = decoder.push_at("[conn7] end 192.0.2.7", now).unwrap();
        assert!(matches!(filter.evaluate_at(&record, now), Verdict::Missed));
    }

    #[test]
    fn errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.conf");
        std::fs::write(&path, "[Definition]\nfailregex = x\nfailregex = y\n").unwrap();
        let error = read(&path, &[]).unwrap_err().to_string();
        assert!(error.contains("bad.conf:3"), "{error}");
        std::fs::write(&path, "[Definition]\nignoreregex = x\n").unwrap();
        assert!(matches!(
            read(&path, &[]),
            Err(Fail2BanFilterError::NoFailregex { .. })
        ));
        assert!(matches!(
            read(&dir.path().join("none.conf"), &[]),
            Err(Fail2BanFilterError::Missing { .. })
        ));
    }
}
