//! Property tests for attacker-controlled input: forged fields never become the reported
//! address, and no input makes the envelope decoder, date parsing, filters, label parsing or
//! config loading panic.
//!
//! The filter properties render real-looking failure lines of every built-in filter from
//! templates whose attacker-controlled fields (user names, URLs, Referer and User-Agent, SIP
//! From headers and Call-IDs, HELO names, …; the fields each filter's comments and fixture
//! name) are filled with generated text full of forged fragments. Each line goes through the
//! daemon's path (envelope decoder, then the filter) bare, syslog-prefixed, in a Docker
//! json-file object and as a CRI line, whole and cut into partial pieces. The property: the
//! filter finds no failure, or the real client's address, never another one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::OnceLock;

use chrono::{DateTime, TimeZone, Utc};
use logjail::config::{Config, DefaultsConfig};
use logjail::filter::date::{self, DatePattern};
use logjail::filter::envelope::{Decoder, Record};
use logjail::filter::{Filter, Verdict, builtin, parse_host};
use logjail::routing::labels::{self, LabelContext};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Cases per property: the whole file stays well under 30 s in a debug build on two cores.
const LINE_CASES: u32 = 2000;
const NO_PANIC_CASES: u32 = 1000;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
}

/// Every built-in filter, compiled once for all cases.
fn filters() -> &'static BTreeMap<&'static str, Filter> {
    static FILTERS: OnceLock<BTreeMap<&'static str, Filter>> = OnceLock::new();
    FILTERS.get_or_init(|| {
        builtin::names()
            .map(|name| {
                let spec = builtin::spec(name).unwrap();
                (name, Filter::compile(name, &spec).unwrap())
            })
            .collect()
    })
}

/// A failure line of one filter. Placeholders: `{H}` the client address as the program writes
/// it, `{HP}` address and port (IPv6 in brackets), `{H24}` address and port as Apache 2.4
/// writes them (IPv6 without brackets), `{V}` the IP version digit; `{A}` … `{D}` attacker
/// text, `{jA}` … `{jD}` the same JSON-escaped (inside a JSON string). A template without
/// `{H}` holds no client address: such a line must never be a failure.
#[derive(Debug, Clone)]
struct Template {
    filter: &'static str,
    /// The syslog tag the program logs under (checked against the filter's `program`).
    program: &'static str,
    message: &'static str,
    /// The message carries its program's own stamp (a log file format): not sent to syslog.
    own_file: bool,
    /// Whether the line, with harmless client text, is a failure.
    fails: bool,
}

/// A message as the program writes it to syslog or its stderr.
const fn t(filter: &'static str, program: &'static str, message: &'static str) -> Template {
    Template {
        filter,
        program,
        message,
        own_file: false,
        fails: true,
    }
}

/// A line of the program's own log file, with its own stamp.
const fn file(filter: &'static str, program: &'static str, message: &'static str) -> Template {
    Template {
        own_file: true,
        ..t(filter, program, message)
    }
}

/// A line that is no failure with harmless client text.
const fn other(filter: &'static str, program: &'static str, message: &'static str) -> Template {
    Template {
        fails: false,
        ..t(filter, program, message)
    }
}

const TEMPLATES: &[Template] = &[
    // sshd: the user name is the client's; sshd's fixed wording follows the address.
    t(
        "sshd",
        "sshd",
        "Failed password for {A} from {H} port 22 ssh2",
    ),
    t(
        "sshd",
        "sshd",
        "Failed password for invalid user {A} from {H} port 4242 ssh2",
    ),
    t(
        "sshd",
        "sshd-session",
        "Failed keyboard-interactive/pam for invalid user {A} from {H} port 1022 ssh2",
    ),
    t(
        "sshd",
        "sshd",
        "Failed publickey for invalid user {A} from {H} port 51000 ssh2: ED25519 SHA256:Yq0bP5mXn0mSxF3fb7R1k3c9yAq5mWc4tE3H3fSKb0Q",
    ),
    t("sshd", "sshd", "Invalid user {A} from {H} port 4242"),
    t("sshd", "sshd", "Invalid user {A} from {H}"),
    t("sshd", "sshd", "Illegal user {A} from {H}"),
    t(
        "sshd",
        "sshd",
        "User {A} from {H} not allowed because not listed in AllowUsers",
    ),
    t(
        "sshd",
        "sshd",
        "error: PAM: Authentication failure for illegal user {A} from {H}",
    ),
    t(
        "sshd",
        "sshd",
        "User not known to the underlying authentication module for {A} from {H}",
    ),
    t(
        "sshd",
        "sshd",
        "error: maximum authentication attempts exceeded for invalid user {A} from {H} port 22 ssh2 [preauth]",
    ),
    // The second line of the same MaxAuthTries event: never counted, whatever the user name.
    other(
        "sshd",
        "sshd",
        "Disconnecting invalid user {A} {H} port 22: Too many authentication failures [preauth]",
    ),
    t(
        "sshd",
        "sshd",
        "Disconnecting authenticating user {A} {H} port 22: Change of username or service not allowed: ({A},ssh-connection) -> ({B},ssh-connection) [preauth]",
    ),
    t(
        "sshd",
        "sshd",
        "Received disconnect from {H} port 22:3: {A}: Auth fail [preauth]",
    ),
    t("sshd", "sshd", "refused connect from {A} ({H})"),
    // Apache: the client's user name, URL, realm and SNI names follow Apache's [client …].
    t(
        "apache-auth",
        "httpd",
        "[auth_basic:error] [pid 17512:tid 1401] [client {H24}] AH01618: user {A} not found: {B}",
    ),
    t(
        "apache-auth",
        "apache2",
        "[auth_basic:error] [pid 1] [client {H24}] AH01617: user {A}: authentication failure for \"{B}\": Password Mismatch",
    ),
    t(
        "apache-auth",
        "httpd",
        "[authz_core:error] [pid 10691] [client {H24}] AH01630: client denied by server configuration: {B}",
    ),
    t(
        "apache-auth",
        "httpd",
        "[auth_digest:error] [pid 1:tid 2] [client {H24}] AH01790: user `{A}' in realm `{B}' not found: {C}",
    ),
    t(
        "apache-auth",
        "httpd",
        "[ssl:error] [pid 6586] [client {H24}] AH02032: Hostname {A} provided via SNI and hostname {B} provided via HTTP have no compatible SSL setup",
    ),
    file(
        "apache-auth",
        "httpd",
        "[Thu Nov 26 07:00:01.123456 2026] [auth_basic:error] [pid 1] [client {H24}] AH01618: user {A} not found: {B}",
    ),
    t(
        "apache-auth",
        "httpd",
        "[error] [client {H}] user {A}: authentication failure for \"{B}\": Password Mismatch",
    ),
    // Asterisk: SIP From headers and display names before the address, Call-IDs and dialled
    // extensions after it.
    t(
        "asterisk",
        "asterisk",
        "NOTICE[1638] chan_sip.c: Registration from '{A}' failed for '{HP}' - Wrong password",
    ),
    file(
        "asterisk",
        "asterisk",
        "[2026-11-26 07:00:01] NOTICE[12931]: chan_sip.c:28468 handle_request_register: Registration from '\"{B}\" <sip:{A}@192.0.2.10:5060>' failed for '{H}' - No matching peer found",
    ),
    t(
        "asterisk",
        "asterisk",
        "NOTICE[19388] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '{A}' failed for '{HP}' (callid: {B}) - Failed to authenticate",
    ),
    t(
        "asterisk",
        "asterisk",
        "NOTICE[19388] res_pjsip/pjsip_distributor.c: Request 'INVITE' from '\"{B}\" <sip:{A}@203.0.113.1>' failed for '{HP}' (callid: {C}) - No matching endpoint found",
    ),
    t(
        "asterisk",
        "asterisk",
        "NOTICE[1] chan_sip.c: Call from '{A}' (UDP:{HP}) to extension '{B}' rejected because extension not found in context 'public'.",
    ),
    t(
        "asterisk",
        "asterisk",
        "NOTICE[1] chan_iax2.c: Host {H} failed MD5 authentication for '{A}' ({B})",
    ),
    t(
        "asterisk",
        "asterisk",
        "NOTICE[1] manager.c: {H} tried to authenticate with nonexistent user '{A}'",
    ),
    t(
        "asterisk",
        "asterisk",
        "NOTICE[1] chan_sip.c: No registration for peer '{A}' (from {H})",
    ),
    t(
        "asterisk",
        "asterisk",
        "SECURITY[1204] res_security_log.c: SecurityEvent=\"InvalidAccountID\",EventTV=\"2026-11-26T07:00:01.123+0000\",Severity=\"Error\",Service=\"SIP\",EventVersion=\"1\",AccountID=\"{A}\",SessionID=\"{B}\",LocalAddress=\"IPV4/UDP/192.0.2.1/5060\",RemoteAddress=\"IPV{V}/UDP/{H}/5060\",Challenge=\"1a2b\"",
    ),
    t(
        "asterisk",
        "asterisk",
        "WARNING[1195][C-00000b43]: Ext. {A}:6 in @ from-sip-external: \"Rejecting unknown SIP connection from {H}\"",
    ),
    // The dialplan Log() rule operators add: the extension (the caller's) before the address.
    file(
        "asterisk",
        "asterisk",
        "[2026-11-26 07:00:01] NOTICE[-1] Ext. {A}: Incoming SIP connection from unknown peer failed for {H} - Unknown connection from peer",
    ),
    t(
        "asterisk",
        "asterisk",
        "NOTICE[3217][C-00000001]: Ext. {A}:4 @ from-sip-external: Incoming SIP connection from unknown peer failed for {H} - Unknown connection from peer",
    ),
    t(
        "asterisk",
        "asterisk",
        "NOTICE[3217][C-00000001]: Ext. {A}:4 in @ from-sip-external: Incoming SIP connection from unknown peer failed for {H}",
    ),
    // Dovecot: the user name (and PAM's ruser) before the address.
    t(
        "dovecot",
        "dovecot",
        "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<{A}>, method=PLAIN, rip={H}, lip=192.0.2.1, TLS, session=<g3ZKeDECFqlWWMbU>",
    ),
    t(
        "dovecot",
        "dovecot",
        "auth-worker(304): pam({A},{H}): pam_authenticate() failed: Authentication failure (password mismatch?)",
    ),
    t(
        "dovecot",
        "dovecot",
        "auth: sql({A},{H},<6rXunFtu493AqJDi>): Password mismatch",
    ),
    t(
        "dovecot",
        "auth",
        "pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser={A} rhost={H}  user={B}",
    ),
    // nginx: user name, request line, Host and Referer on both sides of the address.
    t(
        "nginx-http-auth",
        "nginx",
        "2026/11/26 07:00:01 [error] 2865#0: *66647 user \"{A}\": password mismatch, client: {H}, server: example.com, request: \"{B}\", host: \"{C}\", referrer: \"{D}\"",
    ),
    t(
        "nginx-http-auth",
        "nginx",
        "[error] 2865#0: *1 user \"{A}\" was not found in \"/etc/nginx/.htpasswd\", client: {H}, server: example.com, request: \"GET /{B} HTTP/1.1\", host: \"{C}\"",
    ),
    t(
        "nginx-botsearch",
        "nginx",
        "{H} - {A} [26/Nov/2026:07:00:01 +0000] \"GET /phpmyadmin/{B} HTTP/1.1\" 404 153 \"{C}\" \"{D}\"",
    ),
    t(
        "nginx-botsearch",
        "nginx",
        "www.example.com {H} - - [26/Nov/2026:07:00:01 +0000] \"POST /wp-login.php{B} HTTP/1.1\" 404 153 \"{C}\" \"{D}\"",
    ),
    t(
        "nginx-botsearch",
        "nginx",
        "2026/11/26 07:00:01 [error] 1#1: *1 open() \"/usr/share/nginx/html/phpmyadmin{B}\" failed (2: No such file or directory), client: {H}, server: localhost, request: \"GET /phpmyadmin{B} HTTP/1.1\", host: \"{C}\", referrer: \"{D}\"",
    ),
    // WordPress (access log): user, path, Referer and User-Agent after the address.
    t(
        "wordpress",
        "nginx",
        "{H} - {A} [26/Nov/2026:07:00:01 +0000] \"POST /wp-login.php HTTP/1.1\" 200 1234 \"{C}\" \"{D}\"",
    ),
    t(
        "wordpress",
        "apache2",
        "www.example.com:443 {H} - - [26/Nov/2026:07:00:01 +0000] \"POST /xmlrpc.php?{B} HTTP/1.1\" 200 1234 \"{C}\" \"{D}\"",
    ),
    other(
        "wordpress",
        "nginx",
        "{H} - - [26/Nov/2026:07:00:01 +0000] \"GET /{B} HTTP/1.1\" 200 1 \"{C}\" \"{D}\"",
    ),
    // Traefik: user, request, Referer, User-Agent; the JSON form escapes them.
    t(
        "traefik-auth",
        "traefik",
        "{H} - {A} [26/Nov/2026:07:00:01 +0000] \"GET /{B} HTTP/2.0\" 401 17 \"{C}\" \"{D}\" 72 \"Auth for frontend\" \"/dashboard/\" 0ms",
    ),
    t(
        "traefik-auth",
        "traefik",
        "{\"ClientAddr\":\"{HP}\",\"ClientHost\":\"{H}\",\"ClientPort\":\"51234\",\"ClientUsername\":\"{jA}\",\"DownstreamContentSize\":17,\"DownstreamStatus\":401,\"RequestHost\":\"{jC}\",\"RequestPath\":\"/{jB}\",\"level\":\"info\",\"msg\":\"\",\"request_User-Agent\":\"{jD}\",\"time\":\"2026-11-26T07:00:01Z\"}",
    ),
    // Postfix: envelope addresses, HELO and pipelined input after the client.
    t(
        "postfix",
        "postfix/smtpd",
        "warning: unknown[{H}]: SASL LOGIN authentication failed: {A}",
    ),
    t(
        "postfix",
        "postfix/submission/smtpd",
        "NOQUEUE: reject: RCPT from unknown[{H}]: 554 5.7.1 <{A}>: Relay access denied; from=<{B}> to=<{A}> proto=ESMTP helo=<{C}>",
    ),
    t(
        "postfix",
        "postfix/smtpd",
        "NOQUEUE: reject: EHLO from unknown[{H}]: 504 5.5.2 <{C}>: Helo command rejected: need fully-qualified hostname; proto=SMTP helo=<{C}>",
    ),
    t(
        "postfix",
        "postfix/postscreen",
        "improper command pipelining after CONNECT from unknown[{H}]:{A}",
    ),
    // ProFTPD: the user name after the bracketed client.
    t(
        "proftpd",
        "proftpd",
        "ftp.example.com (client.example.net[{H}]): USER {A} (Login failed): Incorrect password",
    ),
    t(
        "proftpd",
        "proftpd",
        "ftp.example.com (client.example.net[{H}]): USER {A}: no such user found from {H} [{H}] to 192.0.2.1:21",
    ),
    t(
        "proftpd",
        "proftpd",
        "ftp.example.com ({H}[{H}]): SECURITY VIOLATION: {A} login attempted.",
    ),
    // vsftpd: the bracketed user name comes first.
    t(
        "vsftpd",
        "vsftpd",
        "[pid 27202] [{A}] FAIL LOGIN: Client \"{H}\"",
    ),
    file(
        "vsftpd",
        "vsftpd",
        "Thu Nov 26 07:00:01 2026 [pid 15019] [{A}] FAIL LOGIN: Client \"{H}\", \"User is not in the allow user list.\"",
    ),
    t(
        "vsftpd",
        "vsftpd",
        "pam_unix(vsftpd:auth): authentication failure; logname= uid=0 euid=0 tty=ftp ruser={A} rhost={H} user={B}",
    ),
    // recidive: logjail's other messages may quote attacker text; they are never bans.
    other(
        "recidive",
        "logjail",
        "2026-11-26T07:00:01.123456Z  WARN logjail::daemon: {A}",
    ),
    other(
        "recidive",
        "logjail",
        "{\"timestamp\":\"2026-11-26T07:00:01.123456Z\",\"level\":\"WARN\",\"fields\":{\"message\":\"{jA}\"},\"target\":\"logjail::daemon\"}",
    ),
];

/// Forged addresses: none of them is ever a real client in these tests.
const FORGED_HOSTS: &[&str] = &["6.6.6.6", "2001:db8:6::6", "::ffff:6.6.6.6"];

/// Pieces of forged lines and field ends, for every line shape above.
const FORGED: &[&str] = &[
    " from 6.6.6.6 port 22 ssh2",
    " from 6.6.6.6",
    " from 2001:db8:6::6 port 1",
    " 6.6.6.6 port 22: Too many authentication failures [preauth]",
    "6.6.6.6",
    "[6.6.6.6]",
    "[2001:db8:6::6]",
    "' failed for '6.6.6.6:5060' - Wrong password",
    "' failed for '6.6.6.6:5060' (callid: x) - Failed to authenticate",
    "' (UDP:6.6.6.6:5060) to extension '",
    "' (from 6.6.6.6)",
    ": Incoming SIP connection from unknown peer failed for 6.6.6.6 - Unknown connection from peer",
    ": Incoming SIP connection from unknown peer failed for 6.6.6.6",
    " - Unknown connection from peer",
    ":4 @ from-sip-external: ",
    "\" 200 1 \"",
    "\" 401 17 \"",
    "6.6.6.6 - - [26/Nov/2026:07:00:01 +0000] \"POST /wp-login.php HTTP/1.1\" 200 1",
    "\", client: 6.6.6.6, server: x, request: \"GET / HTTP/1.1\"",
    "\": password mismatch, client: 6.6.6.6, server: x, request: \"GET / HTTP/1.1",
    ">, method=PLAIN, rip=6.6.6.6, lip=1.1.1.1",
    ">, rip=6.6.6.6",
    ",6.6.6.6): unknown user",
    " rhost=6.6.6.6",
    "] FAIL LOGIN: Client \"6.6.6.6\"",
    "\", \"",
    "[client 6.6.6.6:1] AH01618: user x not found: /",
    " [client 6.6.6.6] ",
    ": authentication failure for \"/\": Password Mismatch",
    "unknown[6.6.6.6]: SASL LOGIN authentication failed: x",
    "(client.example.net[6.6.6.6]): ",
    "\",RemoteAddress=\"IPV4/UDP/6.6.6.6/5060\"",
    "\",SessionID=\"",
    "\\\",\\\"ClientHost\\\":\\\"6.6.6.6",
    "\",\"ClientHost\":\"6.6.6.6",
    "INFO logjail::ban: ban jail=sshd host=6.6.6.6",
    "\nFailed password for root from 6.6.6.6 port 22 ssh2\n",
    "\nInvalid user x from 6.6.6.6\n",
    "\n6.6.6.6 - - [26/Nov/2026:07:00:01 +0000] \"POST /wp-login.php HTTP/1.1\" 200 1\n",
    "\nNOTICE[1] chan_sip.c: Registration from 'x' failed for '6.6.6.6' - Wrong password\n",
    "\n",
    "\r",
    "\r\n",
    "'",
    "\"",
    "\\",
    "`",
    ":",
    ",",
    "<",
    ">",
    " ",
    "\t",
    "\u{0}",
    "é",
    "\u{3000}",
    "\u{feff}",
    "🦀",
];

/// Text a client might send: forged fragments, plain words, arbitrary Unicode and long runs.
fn attacker_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => prop::sample::select(FORGED).prop_map(str::to_string),
        3 => "[a-zA-Z0-9 ._@:/-]{0,10}",
        1 => any::<String>().prop_map(|s| s.chars().take(10).collect::<String>()),
        1 => (prop::sample::select(&[" ", "a", "'", "\"", "6.6.6.6 ", "\\"][..]), 1..400usize)
            .prop_map(|(run, count)| run.repeat(count)),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
}

/// Addresses of real clients, in every written form (an IPv4-mapped one is reported as IPv4).
fn real_host() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u8..255).prop_map(|n| format!("192.0.2.{n}")),
        (1u8..255).prop_map(|n| format!("198.51.100.{n}")),
        (1u16..0xffff).prop_map(|n| format!("2001:db8:1::{n:x}")),
        (1u16..0xffff).prop_map(|n| format!("2001:db8:1:2:3:4:5:{n:x}")),
        (1u8..255).prop_map(|n| format!("::ffff:192.0.2.{n}")),
    ]
}

/// Fills a template in one pass, so that attacker text holding `{H}` stays as it is.
fn render(template: &str, host: &str, attacker: &[String; 4]) -> String {
    let v6 = host.contains(':');
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let field = |letter: &str| ["A", "B", "C", "D"].iter().position(|l| *l == letter);
        match &after[..close] {
            "H" => out.push_str(host),
            "HP" if v6 => out.push_str(&format!("[{host}]:5060")),
            "HP" => out.push_str(&format!("{host}:5060")),
            "H24" => out.push_str(&format!("{host}:51386")),
            "V" => out.push(if v6 && !host.starts_with("::ffff:") {
                '6'
            } else {
                '4'
            }),
            name if name.len() == 1 && field(name).is_some() => {
                out.push_str(&attacker[field(name).unwrap()]);
            }
            name if name.len() == 2 && name.starts_with('j') && field(&name[1..]).is_some() => {
                let quoted = serde_json::to_string(&attacker[field(&name[1..]).unwrap()]).unwrap();
                out.push_str(&quoted[1..quoted.len() - 1]);
            }
            _ => {
                // Literal braces of a JSON template.
                out.push('{');
                rest = after;
                continue;
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The raw lines one message becomes in each envelope, as the sources hand them to the
/// decoder. Bare, syslog and CRI lines are physical lines: the program (or the runtime) ends a
/// line at a newline, so a message that holds one is not a line of these forms; the programs
/// whose lines are tested here escape newlines in client text, so they are removed here. A
/// json-file `log` value carries the newline escaped inside one line, and keeps it.
fn envelopes(template: &Template, message: &str) -> Vec<(&'static str, String)> {
    let physical = message.replace('\n', "");
    let program = template.program;
    let mut lines = vec![("bare", physical.clone())];
    if !template.own_file {
        lines.push((
            "bsd-syslog",
            format!("Nov 26 07:00:01 web {program}[4242]: {physical}"),
        ));
        lines.push((
            "rfc3339-syslog",
            format!("2026-11-26T07:00:01.123456+00:00 web {program}[4242]: {physical}"),
        ));
    }
    lines.extend([
        (
            "cri",
            format!("2026-11-26T07:00:01.123456789Z stderr F {physical}"),
        ),
        (
            "json-file",
            serde_json::json!({
                "log": format!("{message}\n"),
                "stream": "stderr",
                "time": "2026-11-26T07:00:01.123456789Z",
            })
            .to_string(),
        ),
    ]);
    lines
}

/// A message cut into partial pieces at the given fractions of its length, in json-file or
/// CRI form (json-file pieces lack the final newline; CRI pieces are tagged `P`).
fn pieces(message: &str, cuts: &[f64], json: bool) -> Vec<String> {
    let mut bounds: Vec<usize> = cuts
        .iter()
        .map(|fraction| {
            let mut at = ((message.len() as f64) * fraction) as usize;
            while !message.is_char_boundary(at) {
                at -= 1;
            }
            at
        })
        .collect();
    bounds.push(0);
    bounds.push(message.len());
    bounds.sort_unstable();
    bounds.dedup();
    let parts: Vec<&str> = bounds.windows(2).map(|w| &message[w[0]..w[1]]).collect();
    let last = parts.len().saturating_sub(1);
    parts
        .iter()
        .enumerate()
        .map(|(index, part)| {
            let complete = index == last;
            if json {
                let log = if complete {
                    format!("{part}\n")
                } else {
                    (*part).to_string()
                };
                serde_json::json!({"log": log, "stream": "stdout", "time": "2026-11-26T07:00:01Z"})
                    .to_string()
            } else {
                let tag = if complete { "F" } else { "P" };
                format!("2026-11-26T07:00:01Z stdout {tag} {part}")
            }
        })
        .collect()
}

/// What the daemon makes of a sequence of raw lines: the verdicts of the records they yield.
fn judge_lines(filter: &Filter, lines: &[String]) -> Vec<Verdict> {
    let mut decoder = Decoder::new();
    let mut verdicts = Vec::new();
    for line in lines {
        if let Some(record) = decoder.push_at(line, now()) {
            verdicts.push(filter.evaluate_at(&record, now()));
        }
    }
    verdicts
}

/// The property itself: no failure, or a failure of the real client.
fn check_host(verdicts: &[Verdict], expected: Option<IpAddr>, context: &str) {
    for verdict in verdicts {
        if let Verdict::Failure(failure) = verdict {
            assert_eq!(
                Some(failure.host),
                expected,
                "forged address reported ({context})"
            );
        }
    }
}

/// `cases` cases; a failing case is kept under `tests/proptest-regressions/` and tried first
/// on later runs.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/filter_properties.txt",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(LINE_CASES))]

    #[test]
    fn forged_fields_never_become_the_reported_address(
        template in prop::sample::select(TEMPLATES),
        host in real_host(),
        attacker in [attacker_text(), attacker_text(), attacker_text(), attacker_text()],
        cuts in prop::collection::vec(0.0f64..1.0, 1..4),
    ) {
        let filter = &filters()[template.filter];
        let expected = template.message.contains("{H").then(|| parse_host(&host).unwrap());
        let message = render(template.message, &host, &attacker);
        for (envelope, raw) in envelopes(&template, &message) {
            let context = format!("{} via {envelope}: {raw:?}", template.filter);
            check_host(&judge_lines(filter, std::slice::from_ref(&raw)), expected, &context);
        }
        // Partial pieces (Docker's 16 KiB split, CRI `P` lines) are joined to the same line.
        // Runtimes end a piece at a newline, so only newline-free text is cut.
        let physical = message.replace('\n', "");
        for json in [true, false] {
            let lines = pieces(&physical, &cuts, json);
            let joined = judge_lines(filter, &lines);
            let whole = judge_lines(filter, &pieces(&physical, &[], json));
            prop_assert_eq!(&joined, &whole, "pieces {:?}", lines);
            check_host(&joined, expected, &format!("{} in pieces: {lines:?}", template.filter));
        }
    }

    #[test]
    fn forged_hosts_alone_are_never_reported_for_a_real_line(
        template in prop::sample::select(TEMPLATES),
        forged in prop::sample::select(FORGED_HOSTS),
        attacker in [attacker_text(), attacker_text(), attacker_text(), attacker_text()],
    ) {
        // The attacker's text names only forged addresses while the real client is a
        // documentation address: whatever matches must be that one.
        let host = "203.0.113.77";
        let attacker = attacker.map(|text| text.replace("6.6.6.6", forged));
        let filter = &filters()[template.filter];
        let expected = template.message.contains("{H").then(|| parse_host(host).unwrap());
        let message = render(template.message, host, &attacker);
        for (envelope, raw) in envelopes(&template, &message) {
            let context = format!("{} via {envelope}: {raw:?}", template.filter);
            check_host(&judge_lines(filter, std::slice::from_ref(&raw)), expected, &context);
        }
    }
}

/// Raw lines of every shape the decoder looks at, filled with arbitrary text.
fn raw_line() -> impl Strategy<Value = String> {
    let text = prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        "[ -~]{0,80}",
        (attacker_text(), attacker_text()).prop_map(|(a, b)| format!("{a}{b}")),
    ];
    let stamp = prop_oneof![
        Just("2026-11-26T07:00:01.123456789Z".to_string()),
        Just("9999-12-31T23:59:59.999999999+23:59".to_string()),
        Just("0000-01-01T00:00:00-23:59".to_string()),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:?[0-9]{2})?",
        "[0-9TZ:.+ -]{0,30}",
    ];
    let stream = prop_oneof![
        Just("stdout".to_string()),
        Just("stderr".to_string()),
        "[a-z]{0,7}",
    ];
    let tag = prop_oneof![
        Just("F".to_string()),
        Just("P".to_string()),
        Just("F:x".to_string()),
        Just("P:".to_string()),
        "[A-Z:]{0,3}",
    ];
    let syslog_stamp = prop_oneof![
        Just("Nov 26 07:00:01".to_string()),
        Just("Feb 29 23:59:59".to_string()),
        Just("Dec 31 23:59:60.999999 9999".to_string()),
        Just("[Thu Nov 26 07:00:01.123456 2026]".to_string()),
        Just("26/Nov/2026:07:00:01 +9999".to_string()),
        "[A-Z][a-z]{2} [ 0-9]{1,2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?( [0-9]{4})?",
        "<[0-9]{1,4}>(1 )?",
    ];
    prop_oneof![
        text.clone(),
        (text.clone(), stream.clone(), stamp.clone(), any::<bool>()).prop_map(
            |(log, stream, time, newline)| {
                let log = if newline { format!("{log}\n") } else { log };
                serde_json::json!({"log": log, "stream": stream, "time": time}).to_string()
            }
        ),
        // JSON-ish: a json-file start followed by anything, broken objects included.
        text.clone().prop_map(|rest| format!("{{\"log\":{rest}")),
        (stamp, stream, tag, text.clone())
            .prop_map(|(stamp, stream, tag, text)| format!("{stamp} {stream} {tag} {text}")),
        (syslog_stamp, "[a-z0-9./@\\[\\]:-]{0,12}", text)
            .prop_map(|(stamp, tag, text)| format!("{stamp} host {tag} {text}")),
    ]
}

/// Reference times from both ends of what an envelope's RFC 3339 stamp can carry.
fn reference_time() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        Just(now()),
        Just(Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap()),
        Just(Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap()),
        (-62_000_000_000i64..253_000_000_000).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap()),
    ]
}

const DATEPATTERNS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S",
    "^%b %d %H:%M:%S",
    "{^LN-BEG}%d/%b/%Y:%H:%M:%S %z",
    "%Y-%m-%dT%H:%M:%S%z",
    "%m/%d %I:%M:%S %p",
    "%j %Y %H:%M",
    "%s",
    "EPOCH",
    "^EPOCH",
    "%e %B %y %T.%f",
];

proptest! {
    #![proptest_config(config(NO_PANIC_CASES))]

    #[test]
    fn decoding_and_filtering_never_panic(
        lines in prop::collection::vec(raw_line(), 1..8),
        reference in reference_time(),
    ) {
        let mut decoder = Decoder::new();
        for line in &lines {
            if let Some(record) = decoder.push_at(line, reference) {
                for filter in filters().values() {
                    let _ = filter.evaluate_at(&record, reference);
                }
            }
        }
        for record in decoder.flush(reference) {
            for filter in filters().values() {
                let _ = filter.evaluate_at(&record, reference);
            }
        }
        for line in &lines {
            let record = Record::from_parts(line, Some(reference), Some("sshd"), reference);
            let _ = filters()["sshd"].evaluate_at(&record, reference);
        }
    }

    #[test]
    fn date_parsing_never_panics(
        text in raw_line(),
        reference in reference_time(),
        pattern in prop_oneof![
            prop::sample::select(DATEPATTERNS).prop_map(str::to_string),
            "[%YmdHMSbBaAjzZsTfeIpy:/ ^-]{0,12}",
        ],
        digits in "[0-9]{9,30}(\\.[0-9]{0,20})?",
    ) {
        let _ = date::leading_stamp(&text, reference);
        let _ = date::inline_time(&text, reference);
        if let Ok(pattern) = DatePattern::new(&pattern) {
            let _ = pattern.find(&text, reference);
            let _ = pattern.find(&format!("{digits} {text}"), reference);
            let _ = pattern.find(&format!("x {digits}"), reference);
        }
    }
}

/// Label keys: logjail's own, jail labels with arbitrary names and keys, and foreign ones.
fn label_key() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        "[a-z0-9_-]{1,30}",
        any::<String>().prop_map(|s| s.chars().take(40).collect::<String>()),
        Just(String::new()),
        Just("a".repeat(21)),
        Just("a".repeat(20)),
        Just("sshd".to_string()),
    ];
    let key = prop_oneof![
        prop::sample::select(
            &[
                "filter", "maxretry", "findtime", "bantime", "port", "ports", "protocol", "action",
                "ignoreip",
            ][..]
        )
        .prop_map(str::to_string),
        "[a-z.]{0,8}",
    ];
    prop_oneof![
        Just("logjail.enable".to_string()),
        Just("logjail.jails".to_string()),
        (name, key).prop_map(|(name, key)| format!("logjail.jail.{name}.{key}")),
        "logjail\\.[a-z.]{0,20}",
        any::<String>(),
    ]
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            &[
                "true",
                "no",
                "sshd",
                "wordpress",
                "3",
                "0",
                "-1",
                "99999999999999999999",
                "4294967296",
                "10m",
                "99999999999999999w",
                "18446744073709551615",
                "permanent",
                "22,80",
                "all",
                "1-65535",
                "65535-1",
                "0",
                "70000",
                "tcp",
                "udp",
                "drop",
                "tcp-reset",
                "reject",
                "1.2.3.4/33",
                "::/0",
                "10.0.0.0/8, ::1",
                "'quoted'",
                "\"",
                "",
            ][..]
        )
        .prop_map(str::to_string),
        "[a-z0-9 ,./:'\"-]{0,30}",
        any::<String>(),
        // Jail lists with long names.
        prop::collection::vec("[a-zA-Z0-9_-]{0,30}", 0..5).prop_map(|names| names.join(",")),
    ]
}

/// YAML-ish text: lines of known keys at random depths, with awkward scalars, flow
/// collections, anchors, aliases, merge keys and tags.
fn yamlish() -> impl Strategy<Value = String> {
    let key = prop::sample::select(
        &[
            "defaults",
            "jails",
            "filters",
            "docker",
            "firewall",
            "store",
            "control",
            "metrics",
            "log",
            "bantime",
            "findtime",
            "maxretry",
            "ignoreip",
            "ignoreself",
            "action",
            "sources",
            "file",
            "journal",
            "container",
            "filter",
            "failregex",
            "ignoreregex",
            "prefregex",
            "datepattern",
            "program",
            "ports",
            "protocol",
            "chains",
            "manual",
            "enabled",
            "increment",
            "chain_prefix",
            "backend",
            "mode",
            "require_labels",
            "read_mode",
            "webhook",
            "command",
            "url",
            "listen",
            "socket",
            "path",
            "level",
            "format",
            "optional",
            "label",
            "image",
            "name",
            "factor",
            "maxtime",
            "multipliers",
            "rndtime",
            "overalljails",
            "timeout",
            "retries",
            "headers",
            "argv",
            "on",
            "matches",
            "sshd",
            "<<",
            "? x",
            "&a key",
            "*a",
        ][..],
    );
    let scalar = prop_oneof![
        prop::sample::select(
            &[
                "10m",
                "-1",
                "0",
                "99999999999999999999w",
                "18446744073709551615",
                "1e400",
                "true",
                "~",
                "null",
                "''",
                "\"\"",
                "[]",
                "{}",
                "[a, b",
                "{a: 1",
                "*a",
                "&a x",
                "!!binary aGk=",
                "!tag x",
                "'^Failed for <HOST>$'",
                "'<HOST> <HOST>'",
                "'(?<=x)<HOST>'",
                "'%(known)s'",
                "'<F-USER>x'",
                "'['",
                "'(a+)+$<HOST>'",
                "1.2.3.4/33",
                "::ffff:0:0/96",
                "all",
                "1-65535",
                "65535-1",
                "input",
                "docker-user",
                "/dev/null",
                "/nonexistent/*.log",
                "'%s'",
                "EPOCH",
                "|",
                ">-",
                "\"\\u0000\"",
                "\"\\xff\"",
                "a: b: c",
                "- x",
                "- - x",
                "#",
            ][..],
        )
        .prop_map(str::to_string),
        "[a-zA-Z0-9 ./:<>%*&!'\"\\[\\]{},#|-]{0,20}",
        any::<String>().prop_map(|s| s.chars().take(20).collect::<String>()),
    ];
    let line = (0usize..4, any::<bool>(), key, scalar, any::<bool>()).prop_map(
        |(depth, item, key, scalar, nested)| {
            let indent = "  ".repeat(depth);
            let dash = if item { "- " } else { "" };
            if nested {
                format!("{indent}{dash}{key}:")
            } else {
                format!("{indent}{dash}{key}: {scalar}")
            }
        },
    );
    prop_oneof![
        4 => prop::collection::vec(line, 0..25).prop_map(|lines| lines.join("\n")),
        1 => any::<String>(),
        1 => prop::collection::vec(any::<u8>(), 0..300)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
    ]
}

proptest! {
    #![proptest_config(config(NO_PANIC_CASES))]

    #[test]
    fn labels_never_panic_and_never_make_overlong_chains(
        labels in prop::collection::hash_map(label_key(), label_value(), 0..12),
        chain_prefix in prop::sample::select(&["logjail", "f2b", "a-very-long-prefix-x"][..]),
        host_network in any::<bool>(),
    ) {
        let defaults = DefaultsConfig::default();
        let filters: BTreeSet<String> = builtin::names().map(str::to_string).collect();
        let yaml_jails: BTreeSet<String> = ["sshd".to_string()].into();
        let context = LabelContext {
            defaults: &defaults,
            filters: &filters,
            yaml_jails: &yaml_jails,
            chain_prefix,
            host_network,
        };
        let parsed = labels::parse(&labels, &context);
        let names = parsed.jails.iter().chain(parsed.defined.iter().map(|jail| &jail.name));
        for name in names {
            // iptables chain names are at most 28 characters: PREFIX-JAIL must fit.
            prop_assert!(chain_prefix.len() + 1 + name.len() <= 28, "chain for {name:?}");
            prop_assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "jail name {name:?}"
            );
        }
        for jail in &parsed.defined {
            prop_assert!(!yaml_jails.contains(&jail.name));
            prop_assert!(jail.maxretry >= 1);
        }
    }

    #[test]
    fn config_loading_never_panics(text in yamlish()) {
        if let Ok(config) = Config::from_yaml_str(&text, "fuzz.yaml") {
            // What loads is usable: every enabled jail's filter was compiled, and its chain
            // name fits iptables.
            for jail in config.jails.iter().filter(|jail| jail.enabled && !jail.is_manual()) {
                if let Some(filter) = &jail.filter {
                    prop_assert!(config.filters.contains_key(filter), "jail {} filter {filter}", jail.name);
                }
                prop_assert!(config.firewall.chain_prefix.len() + 1 + jail.name.len() <= 28);
            }
        }
    }
}

#[test]
fn every_template_is_a_failure_of_its_filter_with_plain_text() {
    // The templates must be real failure lines: with harmless attacker text each one is the
    // real client's failure (or, without an address, no failure) in every envelope, so the
    // properties above test lines the filters actually match.
    let attacker = [
        "bob".to_string(),
        "x".to_string(),
        "y".to_string(),
        "z".to_string(),
    ];
    let mut problems = Vec::new();
    for template in TEMPLATES {
        let filter = &filters()[template.filter];
        for host in ["198.51.100.7", "2001:db8:1::7"] {
            let message = render(template.message, host, &attacker);
            let expected = template.fails.then(|| host.parse::<IpAddr>().unwrap());
            for (envelope, raw) in envelopes(template, &message) {
                let verdicts = judge_lines(filter, std::slice::from_ref(&raw));
                let got = verdicts.iter().find_map(|verdict| match verdict {
                    Verdict::Failure(failure) => Some(failure.host),
                    _ => None,
                });
                if got != expected {
                    problems.push(format!(
                        "{} via {envelope}: expected {expected:?}, got {verdicts:?}\n    {raw}",
                        template.filter
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Addresses that are never a client, as programs may write them.
const NOT_CLIENTS: &[&str] = &[
    "0.0.0.0",
    "::",
    "::ffff:0.0.0.0",
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "::ffff:224.0.0.251",
    "255.255.255.255",
];

#[test]
fn a_failure_line_naming_a_non_client_address_is_no_failure() {
    // Every template that is a failure with a real client, with an address that is never a
    // client in its place: the filter refuses the line, in every envelope, and says why.
    let attacker = [
        "bob".to_string(),
        "x".to_string(),
        "y".to_string(),
        "z".to_string(),
    ];
    let mut problems = Vec::new();
    for template in TEMPLATES.iter().filter(|t| t.fails) {
        let filter = &filters()[template.filter];
        for host in NOT_CLIENTS {
            let canonical = logjail::address::canonical(host.parse().unwrap());
            let message = render(template.message, host, &attacker);
            for (envelope, raw) in envelopes(template, &message) {
                let verdicts = judge_lines(filter, std::slice::from_ref(&raw));
                // The unspecified address is reported as Fail2Ban reports it, for the jail to
                // refuse (src/jail/ignore.rs); the others are refused by the filter.
                let refused = if canonical.is_unspecified() {
                    matches!(
                        verdicts.as_slice(),
                        [Verdict::Failure(failure)] if failure.host == canonical
                            && logjail::address::not_a_client(failure.host).is_some()
                    )
                } else {
                    matches!(
                        verdicts.as_slice(),
                        [Verdict::NotAClient { address, .. }] if *address == canonical
                    )
                };
                if !refused {
                    problems.push(format!(
                        "{} via {envelope}: expected a refusal of {canonical}, got {verdicts:?}\n    {raw}",
                        template.filter
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

proptest! {
    #![proptest_config(config(LINE_CASES / 4))]

    #[test]
    fn non_client_addresses_are_never_reported(
        template in prop::sample::select(TEMPLATES),
        host in prop::sample::select(NOT_CLIENTS),
        attacker in [attacker_text(), attacker_text(), attacker_text(), attacker_text()],
    ) {
        // The real address is never a client and the attacker's text holds forged ones:
        // nothing may be reported but the unspecified address itself, which the jail refuses.
        let filter = &filters()[template.filter];
        let canonical = logjail::address::canonical(host.parse().unwrap());
        let expected = canonical.is_unspecified().then_some(canonical);
        let message = render(template.message, host, &attacker);
        for (envelope, raw) in envelopes(&template, &message) {
            let context = format!("{} via {envelope}: {raw:?}", template.filter);
            check_host(&judge_lines(filter, std::slice::from_ref(&raw)), expected, &context);
        }
    }
}

#[test]
fn templates_cover_every_builtin_filter() {
    let covered: BTreeSet<&str> = TEMPLATES.iter().map(|template| template.filter).collect();
    let all: BTreeSet<&str> = builtin::names().collect();
    assert_eq!(covered, all);
}
