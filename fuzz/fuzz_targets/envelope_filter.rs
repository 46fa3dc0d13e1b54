//! Fuzz target: raw lines through the envelope decoder and every built-in filter (the
//! daemon's path). Panics are bugs; so is a failure whose address is not the real client's
//! when the input is placed in the attacker-controlled fields of a real failure line.
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use chrono::{DateTime, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use logjail::filter::envelope::Decoder;
use logjail::filter::{Filter, Verdict, builtin};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
}

fn filters() -> &'static Vec<(&'static str, Filter)> {
    static FILTERS: OnceLock<Vec<(&'static str, Filter)>> = OnceLock::new();
    FILTERS.get_or_init(|| {
        builtin::names()
            .map(|name| {
                (
                    name,
                    Filter::compile(name, &builtin::spec(name).unwrap()).unwrap(),
                )
            })
            .collect()
    })
}

/// Real failure lines; `{A}` … `{D}` are the client's text, 198.51.100.7 the client.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "sshd",
        "Nov 26 07:00:01 web sshd[1]: Failed password for invalid user {A} from 198.51.100.7 port 22 ssh2",
    ),
    ("sshd", "Invalid user {A} from 198.51.100.7 port 4242"),
    (
        "sshd",
        "Disconnecting authenticating user {A} 198.51.100.7 port 22: Change of username or service not allowed: ({A},ssh-connection) -> ({B},ssh-connection) [preauth]",
    ),
    (
        "asterisk",
        "NOTICE[1] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '{A}' failed for '198.51.100.7:5060' (callid: {B}) - Failed to authenticate",
    ),
    (
        "asterisk",
        "NOTICE[1638] chan_sip.c: Registration from '{A}' failed for '198.51.100.7:5060' - Wrong password",
    ),
    (
        "asterisk",
        "SECURITY[1] res_security_log.c: SecurityEvent=\"InvalidPassword\",EventTV=\"x\",Severity=\"Error\",Service=\"SIP\",EventVersion=\"2\",AccountID=\"{A}\",SessionID=\"{B}\",LocalAddress=\"IPV4/UDP/192.0.2.1/5060\",RemoteAddress=\"IPV4/UDP/198.51.100.7/5060\",Challenge=\"{C}\"",
    ),
    (
        "nginx-http-auth",
        "2026/11/26 07:00:01 [error] 1#0: *1 user \"{A}\": password mismatch, client: 198.51.100.7, server: x, request: \"{B}\", host: \"{C}\", referrer: \"{D}\"",
    ),
    (
        "dovecot",
        "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<{A}>, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, TLS, session=<{B}>",
    ),
    (
        "dovecot",
        "auth: sql({A},198.51.100.7,<{B}>): Password mismatch",
    ),
    (
        "vsftpd",
        "[pid 1] [{A}] FAIL LOGIN: Client \"198.51.100.7\", \"User is not in the allow user list.\"",
    ),
    (
        "apache-auth",
        "[auth_basic:error] [pid 1] [client 198.51.100.7:1] AH01618: user {A} not found: {B}",
    ),
    (
        "postfix",
        "NOQUEUE: reject: RCPT from unknown[198.51.100.7]: 554 5.7.1 <{A}>: Relay access denied; from=<{B}> to=<{A}> proto=ESMTP helo=<{C}>",
    ),
    (
        "proftpd",
        "ftp.example.com (client.example.net[198.51.100.7]): USER {A} (Login failed): Incorrect password",
    ),
    (
        "wordpress",
        "www.example.com 198.51.100.7 - {A} [26/Nov/2026:07:00:01 +0000] \"POST /wp-login.php HTTP/1.1\" 200 1 \"{C}\" \"{D}\"",
    ),
    (
        "traefik-auth",
        "198.51.100.7 - {A} [26/Nov/2026:07:00:01 +0000] \"GET /{B} HTTP/2.0\" 401 17 \"{C}\" \"{D}\" 72 \"r\" \"/\" 0ms",
    ),
];

/// Fills the placeholders of the template in one pass: a field holding "{B}" stays as it is.
fn render(template: &str, fields: &[&str]) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        match ["{A}", "{B}", "{C}", "{D}"]
            .iter()
            .position(|p| after.starts_with(p))
        {
            Some(index) => {
                out.push_str(fields.get(index).copied().unwrap_or(""));
                rest = &after[3..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Any input, line by line, as a file source hands it on.
    let mut decoder = Decoder::new();
    for line in text.split('\n') {
        if let Some(record) = decoder.push_at(line, now()) {
            for (_, filter) in filters() {
                let _ = filter.evaluate_at(&record, now());
            }
        }
    }
    let _ = decoder.flush(now());

    // The input as the client's fields of a real failure line.
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (name, template) = TEMPLATES[usize::from(selector) % TEMPLATES.len()];
    let rest = String::from_utf8_lossy(rest);
    let fields: Vec<&str> = rest.split('\u{1}').collect();
    let message = render(template, &fields);
    let physical = message.replace('\n', "");
    let json = format!(
        "{{\"log\":{},\"stream\":\"stderr\",\"time\":\"2026-11-26T07:00:01Z\"}}",
        serde_json::to_string(&format!("{message}\n")).unwrap()
    );
    let cri = format!("2026-11-26T07:00:01Z stderr F {physical}");
    let real: IpAddr = "198.51.100.7".parse().unwrap();
    let filter = &filters().iter().find(|(n, _)| *n == name).unwrap().1;
    for raw in [physical, json, cri] {
        let mut decoder = Decoder::new();
        if let Some(record) = decoder.push_at(&raw, now())
            && let Verdict::Failure(failure) = filter.evaluate_at(&record, now())
        {
            assert_eq!(failure.host, real, "{name}: forged address from {raw:?}");
        }
    }
});
