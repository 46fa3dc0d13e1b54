//! `fail2ban-regex [OPTIONS] LOG FILTER [IGNOREREGEX]`: Fail2Ban's filter tester, run on
//! logjail's filter engine and printed in fail2ban-regex's layout (`Results`, `Failregex: N
//! total`, `Ignoreregex`, `Date template hits`, `Lines: N lines, N ignored, N matched, N
//! missed`, the missed and ignored lines).
//!
//! FILTER is a failregex with `<HOST>`, or a Fail2Ban filter by name (`sshd`,
//! `sshd[mode=normal]`, looked up under `-c DIR/filter.d`, default `/etc/fail2ban`) or path.
//! A filter file runs as logjail's built-in filter of the same name when it is Debian's
//! unchanged file ([`crate::importer::filters::builtin_standing_for`]); other filter files
//! are read by the Fail2Ban filter-file reader ([`fail2ban_filter_file`]).
//!
//! Like every logjail filter, a failregex sees the message after the syslog header
//! (`host prog[pid]: `), where fail2ban-regex's own sees the header too: a pattern starting
//! with `^.*` or naming only the message matches alike.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use chrono::Local;

use crate::filter::{Filter, FilterSpec};
use crate::importer::filters::builtin_standing_for;
use crate::importer::values;

use crate::cli::regex::{JudgedLine, LogInput, OutputMode, ResolvedFilter, ScanOptions, scan};

/// fail2ban-regex's exit code on errors.
const EXIT_ERROR: u8 = 255;

/// Lines of each kind printed without `--print-all-…` (fail2ban-regex's `maxlines` default).
const MAX_LINES_SHOWN: usize = 20;

#[derive(Debug, Default)]
struct Options {
    config: Option<PathBuf>,
    datepattern: Option<String>,
    verbose: u32,
    print_all_matched: bool,
    print_all_missed: bool,
    print_all_ignored: bool,
    print_no_missed: bool,
    print_no_ignored: bool,
    out: Option<String>,
    positional: Vec<String>,
}

/// Runs fail2ban-regex's `args` (without the program name).
pub fn main(args: &[String]) -> ExitCode {
    let options = match parse(args) {
        Ok(Some(options)) => options,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ERROR: {message}");
            eprintln!("Usage: fail2ban-regex [OPTIONS] <LOG> <REGEX> [IGNOREREGEX]");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let code = match run(&options, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(out, "ERROR: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    };
    let _ = out.flush();
    code
}

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut options = Options::default();
    let mut index = 0;
    let value = |index: usize, name: &str| -> Result<String, String> {
        args.get(index + 1)
            .cloned()
            .ok_or_else(|| format!("option {name} needs a value"))
    };
    while index < args.len() {
        let arg = args[index].as_str();
        let (name, inline) = match arg.split_once('=') {
            Some((name, inline)) if arg.starts_with("--") => (name, Some(inline.to_string())),
            _ => (arg, None),
        };
        let take = |index: &mut usize| -> Result<String, String> {
            match &inline {
                Some(text) => {
                    *index += 1;
                    Ok(text.clone())
                }
                None => {
                    let text = value(*index, name)?;
                    *index += 2;
                    Ok(text)
                }
            }
        };
        match name {
            "-h" | "--help" => {
                print!("{}", help());
                return Ok(None);
            }
            "-V" | "--version" => {
                println!(
                    "logjail {} (answering as fail2ban-regex)",
                    env!("CARGO_PKG_VERSION")
                );
                return Ok(None);
            }
            "-c" | "--config" => options.config = Some(PathBuf::from(take(&mut index)?)),
            "-d" | "--datepattern" => options.datepattern = Some(take(&mut index)?),
            "-o" | "--out" => options.out = Some(take(&mut index)?),
            "--verbosity" => {
                options.verbose = take(&mut index)?
                    .parse()
                    .map_err(|_| "--verbosity takes a number".to_string())?
            }
            // Accepted for compatibility; logjail reads UTF-8, never resolves names, judges
            // each line alone and has no journal reader here.
            "-e" | "--encoding" | "--timezone" | "--TZ" | "--usedns" | "-L" | "--maxlines"
            | "-l" | "--log-level" | "-m" | "--journalmatch" => {
                take(&mut index)?;
            }
            "-r" | "--raw" | "--verbose-date" | "--VD" | "-D" | "--debuggex" | "--no-check-all"
            | "-t" | "--log-traceback" | "--full-traceback" => index += 1,
            "--print-all-matched" => {
                options.print_all_matched = true;
                index += 1;
            }
            "--print-all-missed" => {
                options.print_all_missed = true;
                index += 1;
            }
            "--print-all-ignored" => {
                options.print_all_ignored = true;
                index += 1;
            }
            "--print-no-missed" => {
                options.print_no_missed = true;
                index += 1;
            }
            "--print-no-ignored" => {
                options.print_no_ignored = true;
                index += 1;
            }
            "-v" | "--verbose" => {
                options.verbose += 1;
                index += 1;
            }
            flag if flag.starts_with("-v") && flag[1..].chars().all(|c| c == 'v') => {
                options.verbose += (flag.len() - 1) as u32;
                index += 1;
            }
            flag if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("no such option: {flag}"));
            }
            _ => {
                options.positional.push(arg.to_string());
                index += 1;
            }
        }
    }
    if options.print_no_missed && options.print_all_missed {
        return Err("--print-no-missed and --print-all-missed are mutually exclusive.".to_string());
    }
    if options.print_no_ignored && options.print_all_ignored {
        return Err(
            "--print-no-ignored and --print-all-ignored are mutually exclusive.".to_string(),
        );
    }
    if !(2..=3).contains(&options.positional.len()) {
        return Err("give LOG and REGEX (and optionally IGNOREREGEX)".to_string());
    }
    Ok(Some(options))
}

/// How FILTER (or IGNOREREGEX) was read, for the `Use …` header line.
enum Named {
    /// A Fail2Ban filter file, run as this built-in filter.
    File {
        name: String,
        basedir: PathBuf,
        builtin: String,
    },
    /// A regex given on the command line.
    Line(String),
}

/// Reads the Fail2Ban filter file `path` with `options` into a logjail filter, through the
/// filter-file reader ([`crate::filter::fail2ban`]); compile errors name the file and line.
fn fail2ban_filter_file(path: &Path, options: &[(String, String)]) -> Result<FilterSpec, String> {
    let read = crate::filter::fail2ban::read(path, options).map_err(|e| e.to_string())?;
    if let Err(errors) = Filter::compile(&path.display().to_string(), &read.spec) {
        let lines: Vec<String> = errors
            .iter()
            .map(
                |error| match error.field.and_then(|f| read.locate(f).map(|at| (f, at))) {
                    Some((field, at)) => format!("{at}: {field}: {}", error.message),
                    None => error.to_string(),
                },
            )
            .collect();
        return Err(lines.join("\n"));
    }
    Ok(read.spec)
}

/// The filter file FILTER names, as fail2ban-regex looks for it: a path, or a name (with
/// `[options]`) under `DIR/filter.d` with `.conf` or `.local` added.
fn filter_file(value: &str, config: &Path) -> Option<(PathBuf, Vec<(String, String)>)> {
    let shaped = value
        .trim_start_matches('/')
        .split('[')
        .next()
        .is_some_and(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_alphanumeric() || "/_-.".contains(c))
        });
    if !shaped || value.contains('\n') {
        return None;
    }
    let entry = values::entry(value).ok()?;
    let name = entry.name.as_str();
    let tail_has_dot = name.char_indices().rev().take(6).any(|(_, c)| c == '.');
    let tries: Vec<String> = if tail_has_dot {
        vec![name.to_string()]
    } else {
        vec![
            name.to_string(),
            format!("{name}.conf"),
            format!("{name}.local"),
        ]
    };
    for candidate in tries {
        let path = if candidate.contains('/') {
            PathBuf::from(&candidate)
        } else if config.file_name().is_some_and(|n| n == "filter.d") {
            config.join(&candidate)
        } else {
            config.join("filter.d").join(&candidate)
        };
        if path.is_file() {
            return Some((path, entry.options));
        }
    }
    None
}

/// FILTER read into a filter spec and its header line.
fn read_filter(value: &str, config: &Path) -> Result<(FilterSpec, Named), String> {
    if let Some((path, options)) = filter_file(value, config) {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let folder = path.parent().unwrap_or(Path::new("."));
        let basedir = if folder.file_name().is_some_and(|n| n == "filter.d") {
            folder.parent().unwrap_or(folder).to_path_buf()
        } else {
            folder.to_path_buf()
        };
        if let Some(builtin) = builtin_standing_for(&basedir, &name, &options)
            && let Some(spec) = crate::filter::builtin::spec(&builtin)
        {
            return Ok((
                spec,
                Named::File {
                    name,
                    basedir,
                    builtin,
                },
            ));
        }
        let spec = fail2ban_filter_file(&path, &options)?;
        return Ok((spec, Named::Line(path.display().to_string())));
    }
    // A built-in name with no Fail2Ban folder around (the logjail image has none).
    if let Some(spec) = crate::filter::builtin::spec(value) {
        return Ok((
            spec,
            Named::File {
                name: value.to_string(),
                basedir: config.to_path_buf(),
                builtin: value.to_string(),
            },
        ));
    }
    Ok((
        FilterSpec {
            failregex: vec![value.to_string()],
            ..FilterSpec::default()
        },
        Named::Line(value.to_string()),
    ))
}

fn run<W: Write>(options: &Options, out: &mut W) -> Result<(), String> {
    let config = options
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::importer::DEFAULT_DIR));
    let write_error = |e: io::Error| format!("standard output: {e}");
    let log = &options.positional[0];
    let (mut spec, named) = read_filter(&options.positional[1], &config)?;
    let ignore = match options.positional.get(2) {
        None => None,
        Some(value) => match filter_file(value, &config) {
            Some((path, _)) => {
                return Err(format!(
                    "{}: an IGNOREREGEX filter file needs the Fail2Ban filter-file reader; give the ignoreregex itself",
                    path.display()
                ));
            }
            None => Some(value.clone()),
        },
    };
    if let Some(ignore) = &ignore {
        spec.ignoreregex.push(ignore.clone());
    }
    if let Some(datepattern) = &options.datepattern {
        spec.datepattern = Some(datepattern.clone());
    }
    let filter = Filter::compile("fail2ban-regex", &spec).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let resolved = ResolvedFilter {
        filter,
        spec: spec.clone(),
        origin: String::new(),
    };
    if log.starts_with("systemd-journal") {
        return Err("reading the journal is not done here; pipe `journalctl -o short` into a file, or use `logjail regex -`".to_string());
    }
    let input = LogInput::from_argument(log);

    let quiet = options.out.is_some();
    if !quiet {
        let mut head = String::from("\nRunning tests\n=============\n\n");
        match &named {
            Named::File {
                name,
                basedir,
                builtin,
            } => {
                let _ = writeln!(
                    head,
                    "Use   failregex filter file : {name}, basedir: {}",
                    basedir.display()
                );
                let _ = writeln!(
                    head,
                    "Use   logjail filter : {builtin} (built-in; stands for Debian's unchanged filter.d/{name}.conf)"
                );
            }
            Named::Line(text) => {
                let _ = writeln!(head, "Use   failregex line : {}", short(text));
            }
        }
        if let Some(ignore) = &ignore {
            let _ = writeln!(head, "Use ignoreregex line : {}", short(ignore));
        }
        if let Some(datepattern) = &options.datepattern {
            let _ = writeln!(head, "Use      datepattern : {datepattern}");
        }
        match &input {
            LogInput::File(path) => {
                let _ = writeln!(head, "Use         log file : {}", path.display());
                let _ = writeln!(head, "Use         encoding : UTF-8");
            }
            LogInput::Line(line) if line.contains('\n') => {
                let _ = writeln!(
                    head,
                    "Use      multi line : {} line(s)",
                    line.split('\n').count()
                );
            }
            LogInput::Line(line) => {
                let _ = writeln!(head, "Use      single line : {}", short(line));
            }
            LogInput::Stdin => {
                let _ = writeln!(head, "Use         log file : -");
            }
        }
        head.push('\n');
        out.write_all(head.as_bytes()).map_err(write_error)?;
    }

    // What the summary prints, gathered while scanning.
    let keep = |all: bool, none: bool, seen: usize| !none && (all || seen <= MAX_LINES_SHOWN);
    let mut matched_lines = Vec::new();
    let mut ignored_lines = Vec::new();
    let mut missed_lines = Vec::new();
    let mut hosts_by_regex: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut failures_out = String::new();
    let started = Instant::now();
    let scan_options = ScanOptions {
        mode: OutputMode::Silent,
        skip_comment_lines: true,
    };
    let tally = scan(
        &input,
        &resolved,
        &scan_options,
        &mut io::sink(),
        |judged| match judged {
            JudgedLine::Failure {
                failure,
                failregex_index,
                raw,
            } => {
                if let Some(token) = &options.out {
                    let text = match token.as_str() {
                        "ip" | "host" => failure.host.to_string(),
                        _ => raw.to_string(),
                    };
                    failures_out.push_str(&text);
                    failures_out.push('\n');
                }
                if options.print_all_matched {
                    matched_lines.push(raw.to_string());
                }
                if options.verbose > 0 {
                    let time = failure
                        .time
                        .with_timezone(&Local)
                        .format("%a %b %d %H:%M:%S %Y");
                    hosts_by_regex
                        .entry(*failregex_index)
                        .or_default()
                        .push(format!("    {}  {time}", failure.host));
                }
            }
            JudgedLine::Ignored { raw, .. } => {
                if keep(
                    options.print_all_ignored,
                    options.print_no_ignored,
                    ignored_lines.len() + 1,
                ) {
                    ignored_lines.push(raw.to_string());
                }
            }
            JudgedLine::Missed { raw, .. } => {
                if keep(
                    options.print_all_missed,
                    options.print_no_missed,
                    missed_lines.len() + 1,
                ) {
                    missed_lines.push(raw.to_string());
                }
            }
        },
    )
    .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    if let Some(token) = &options.out {
        if !matches!(token.as_str(), "ip" | "host" | "msg" | "row") {
            return Err(format!("-o {token}: logjail prints `ip` or `msg` here"));
        }
        out.write_all(failures_out.as_bytes())
            .map_err(write_error)?;
        return Ok(());
    }

    let mut text = String::from("\nResults\n=======\n");
    let mut section = |title: &str,
                       patterns: &[String],
                       hits: &[u64],
                       total: u64,
                       hosts: &BTreeMap<usize, Vec<String>>| {
        let _ = writeln!(text, "\n{title}: {total} total");
        let mut rows = Vec::new();
        for (index, pattern) in patterns.iter().enumerate() {
            let count = hits.get(index).copied().unwrap_or(0);
            if count > 0 || options.verbose > 0 {
                rows.push(format!("{:2}) [{count}] {pattern}", index + 1));
            }
            if let Some(lines) = hosts.get(&index) {
                rows.extend(lines.iter().cloned());
            }
        }
        list(&mut text, &rows, Some(" #) [# of hits] regular expression"));
    };
    section(
        "Failregex",
        &spec.failregex,
        &tally.failregex_hits,
        tally.matched,
        &hosts_by_regex,
    );
    section(
        "Ignoreregex",
        &spec.ignoreregex,
        &tally.ignoreregex_hits,
        tally.ignored,
        &BTreeMap::new(),
    );
    let _ = writeln!(text, "\nDate template hits:");
    let templates: Vec<String> = tally
        .date_hits
        .iter()
        .filter_map(|(label, hits)| template_name(label).map(|name| format!("[{hits}] {name}")))
        .collect();
    list(&mut text, &templates, Some("[# of hits] date format"));
    let _ = writeln!(
        text,
        "\nLines: {} lines, {} ignored, {} matched, {} missed",
        tally.lines, tally.ignored, tally.matched, tally.missed
    );
    let _ = writeln!(text, "[processed in {:.2} sec]", elapsed.as_secs_f64());
    let _ = writeln!(text);
    if options.print_all_matched {
        lines_section(&mut text, "Matched", &matched_lines, tally.matched, true);
    }
    if !options.print_no_ignored {
        lines_section(
            &mut text,
            "Ignored",
            &ignored_lines,
            tally.ignored,
            options.print_all_ignored,
        );
    }
    if !options.print_no_missed {
        lines_section(
            &mut text,
            "Missed",
            &missed_lines,
            tally.missed,
            options.print_all_missed,
        );
    }
    out.write_all(text.as_bytes()).map_err(write_error)
}

/// fail2ban-regex's list block: `|- HEADER`, `|  item` lines, then `` `- ``; nothing when empty.
fn list(text: &mut String, rows: &[String], header: Option<&str>) {
    if rows.is_empty() {
        return;
    }
    if let Some(header) = header {
        let _ = writeln!(text, "|- {header}");
    }
    for row in rows {
        let _ = writeln!(text, "|  {row}");
    }
    let _ = writeln!(text, "`-");
}

fn lines_section(text: &mut String, kind: &str, lines: &[String], count: u64, all: bool) {
    if count == 0 {
        return;
    }
    let header = format!("{kind} line(s):");
    if all || (count as usize) < MAX_LINES_SHOWN {
        let rows: Vec<String> = lines.iter().map(|l| l.trim_end().to_string()).collect();
        list(text, &rows, Some(&header));
    } else {
        let _ = writeln!(
            text,
            "{header} too many to print.  Use --print-all-{} to print all {count} lines",
            kind.to_ascii_lowercase()
        );
    }
}

/// The name fail2ban-regex gives the date template that finds the same stamps.
fn template_name(label: &str) -> Option<String> {
    let name = match label {
        "syslog (MON Day hh:mm:ss)" => {
            r"{^LN-BEG}(?:DAY )?MON Day %k:Minute:Second(?:\.Microseconds)?(?: ExYear)?".to_string()
        }
        "RFC 3339 (YYYY-MM-DDThh:mm:ss)" => {
            r"{^LN-BEG}ExYear(?P<_sep>[-/.])Month(?P=_sep)Day(?:T|  ?)24hour:Minute:Second(?:[.,]Microseconds)?(?:\s*Zone offset)?".to_string()
        }
        "no leading date" => return None,
        other => format!("{other} (logjail)"),
    };
    Some(name)
}

/// fail2ban-regex shortens long values in its header.
fn short(text: &str) -> String {
    const LIMIT: usize = 120;
    if text.chars().count() <= LIMIT {
        return text.to_string();
    }
    let head: String = text.chars().take(LIMIT - 3).collect();
    format!("{head}...")
}

fn help() -> String {
    format!(
        "Usage: fail2ban-regex [OPTIONS] <LOG> <REGEX> [IGNOREREGEX]\n\n\
         logjail {} answering as fail2ban-regex: tests a filter on a log, on logjail's filter engine.\n\n\
         LOG:          a log file, or a log line\n\
         REGEX:        a failregex with <HOST>, or a Fail2Ban filter name (sshd, sshd[mode=normal]) or file\n\
         IGNOREREGEX:  an ignoreregex\n\n\
         Options:\n  \
         -c, --config DIR        Fail2Ban folder filter names are looked up in (default /etc/fail2ban)\n  \
         -d, --datepattern P     the date pattern of a failregex given on the command line\n  \
         -v, --verbose           also list the addresses each failregex found\n  \
         -o, --out ip|msg        print only the address or line of each failure\n  \
         --print-all-matched, --print-all-missed, --print-all-ignored, --print-no-missed, --print-no-ignored\n  \
         -e, -r, -L, -l, -m, -D, -t, --usedns, --timezone, --no-check-all   accepted, no effect\n\n\
         A failregex sees each message after its syslog header (`host prog[pid]: `), as every logjail\n\
         filter does. `logjail regex --help` has logjail's own tester (--json, --bans).\n",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn options_and_positionals() {
        let options = parse(&strings(&[
            "-v",
            "--print-all-missed",
            "/var/log/auth.log",
            "sshd[mode=normal]",
            "for bob",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(options.verbose, 1);
        assert!(options.print_all_missed);
        assert_eq!(options.positional.len(), 3);
        assert!(parse(&strings(&["only-one"])).is_err());
        assert!(
            parse(&strings(&[
                "--print-no-missed",
                "--print-all-missed",
                "a",
                "b"
            ]))
            .is_err()
        );
        assert!(parse(&strings(&["--bogus", "a", "b"])).is_err());
        let options = parse(&strings(&["--config=/x", "a", "b"]))
            .unwrap()
            .unwrap();
        assert_eq!(options.config, Some(PathBuf::from("/x")));
    }

    #[test]
    fn regex_strings_are_not_filter_names() {
        let config = Path::new("/nonexistent");
        assert!(filter_file(r"^Failed password for \S+ from <HOST>", config).is_none());
        assert!(filter_file("sshd", config).is_none());
        let (spec, named) = read_filter(r"from <HOST>$", config).unwrap();
        assert_eq!(spec.failregex, [r"from <HOST>$"]);
        assert!(matches!(named, Named::Line(_)));
    }

    #[test]
    fn list_blocks_like_fail2ban() {
        let mut text = String::new();
        list(&mut text, &["a".into(), "b".into()], Some("H"));
        assert_eq!(text, "|- H\n|  a\n|  b\n`-\n");
        let mut empty = String::new();
        list(&mut empty, &[], Some("H"));
        assert!(empty.is_empty());
    }
}
