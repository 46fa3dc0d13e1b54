#!/usr/bin/env python3
"""Generate a realistic, reproducible /var/log/auth.log for benchmarking sshd filters.

The log is BSD syslog (`Nov 23 07:00:01 web1 sshd[4242]: ...`), the way rsyslog writes it on
Debian. Connections are simulated as sessions (one pid each) whose lines interleave, so that
the mix of lines, hosts and pids looks like a real Internet-facing server: brute-force bots,
scanners that never authenticate, legitimate logins, and the CRON / systemd-logind / sudo
chatter that shares auth.log.

The same seed gives the same file, byte for byte. Every line is classified while it is
written; the ground truth (how many failure lines, of which kinds, how many distinct attacker
addresses) goes to stderr and to `<path>.truth.json`, and with `--labels` every line's class
and expected host are written to a TSV so that a comparison can check hosts line by line.

A "failure line" here is a line in which sshd reports a failed or refused authentication
attempt *and* names the client address. Lines reporting a failure without an address
(`Disconnecting: Too many authentication failures for root [preauth]`) are counted apart, as
`hostless_failure`. Lines that Fail2Ban only counts in its `ddos`/`aggressive` modes
(`Did not receive identification string`, plain `Connection closed by ... [preauth]`) are
noise here.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

HOSTNAME = "web1"
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()

# Classes of lines. FAILURE_KINDS name the brute-force evidence a sshd filter should report.
FAILURE_KINDS = (
    "failed_password",
    "failed_password_invalid",
    "failed_keyboard_interactive",
    "invalid_user",
    "pam_unix_auth_failure",
    "closed_authenticating_user",
    "closed_invalid_user",
    "disconnected_invalid_user",
    "max_auth_attempts",
    "too_many_failures_with_host",
    "not_allowed_users",
    "pam_error_auth_failure",
    "received_disconnect_auth_fail",
)

# Names a brute-force bot tries, weighted towards the classics.
BOT_USERS = (
    ["root"] * 30
    + ["admin"] * 8
    + "user test ubuntu oracle postgres git ftpuser guest pi support ec2-user deploy "
    "jenkins hadoop mysql www-data ansible centos debian nagios minecraft steam tomcat "
    "vagrant elastic odoo sammy dev testuser server user1 student kafka zabbix".split()
)
# Hostile user names: OpenSSH prints the name as sent, so it may contain an address or the
# words that follow the user name in the message. The host a filter reports must stay the real
# client's.
INJECTION_USERS = [
    "admin from 6.6.6.6",
    "root from 6.6.6.6 port 22 ssh2",
    "x from 2001:db8:bad::1",
    "guest port 22 from 7.7.7.7",
    "admin rhost=8.8.4.4",
    "user from 9.9.9.9 port 1 ssh2 [preauth]",
]
LEGIT_USERS = ["alice", "bob", "carol", "deploy", "backup", "git", "ops"]
CRON_COMMANDS = [
    "command -v debian-sa1 > /dev/null && debian-sa1 1 1",
    "cd / && run-parts --report /etc/cron.hourly",
    "/usr/local/bin/backup.sh >/dev/null 2>&1",
    "[ -x /usr/lib/php/sessionclean ] && if [ ! -d /run/systemd/system ]; then /usr/lib/php/sessionclean; fi",
]
SUDO_COMMANDS = [
    "/usr/bin/apt update",
    "/usr/bin/systemctl restart nginx",
    "/usr/bin/journalctl -u sshd",
    "/usr/bin/docker ps",
    "/usr/bin/tail -f /var/log/auth.log",
]
KEX_ALGS = [
    "key exchange method found. Their offer: diffie-hellman-group1-sha1,diffie-hellman-group14-sha1",
    "host key type found. Their offer: ssh-rsa,ssh-dss",
    "cipher found. Their offer: aes128-cbc,3des-cbc",
]


@dataclass
class Line:
    """One output line and what it is."""

    program: str
    pid: int | None
    message: str
    kind: str
    host: str | None = None


@dataclass
class Truth:
    """Counts gathered while writing."""

    lines: int = 0
    kinds: Counter = field(default_factory=Counter)
    failure_hosts: set = field(default_factory=set)
    failure_hosts_v6: set = field(default_factory=set)
    injection_lines: int = 0


class AddressBook:
    """Attacker and legitimate client addresses, drawn once from the seeded generator."""

    def __init__(self, rng: random.Random, attackers_v4: int, attackers_v6: int):
        self.rng = rng
        v4 = set()
        while len(v4) < attackers_v4:
            a = rng.randint(1, 223)
            if a in (10, 127, 0, 100, 169, 172, 192):
                continue
            v4.add(f"{a}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}")
        v6 = set()
        while len(v6) < attackers_v6:
            net = ipaddress.IPv6Address(
                (0x20010DB8 << 96) | (rng.getrandbits(32) << 64) | rng.getrandbits(64)
            )
            # Mix of fully written and ::-compressed addresses, as sshd prints them.
            if rng.random() < 0.3:
                net = ipaddress.IPv6Address((int(net) >> 64 << 64) | rng.randint(1, 0xFFFF))
            v6.add(str(net))
        # A few bots come over IPv4-mapped IPv6 sockets; the expected host is the IPv4 address.
        self.attackers = sorted(v4) + sorted(v6)
        rng.shuffle(self.attackers)
        # Zipf-like activity: a handful of bots produce most attempts.
        self.weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(self.attackers))]
        self.legit = [f"198.51.100.{i}" for i in range(10, 40)] + [
            f"2001:db8:100::{i:x}" for i in range(1, 11)
        ]

    def attacker(self) -> str:
        return self.rng.choices(self.attackers, weights=self.weights, k=1)[0]

    def legitimate(self) -> str:
        return self.rng.choice(self.legit)


class Generator:
    def __init__(self, seed: int, start: datetime, openssh: str = "mixed"):
        self.openssh = openssh
        self.rng = random.Random(seed)
        self.book = AddressBook(self.rng, attackers_v4=4000, attackers_v6=1200)
        self.clock = start
        self.next_pid = 1000
        self.session_id = 100

    def pid(self) -> int:
        self.next_pid += self.rng.randint(1, 7)
        if self.next_pid > 4_000_000:
            self.next_pid = 1000
        return self.next_pid

    def port(self) -> int:
        return self.rng.randint(1024, 65535)

    def fingerprint(self) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        return "SHA256:" + "".join(self.rng.choice(alphabet) for _ in range(43))

    # Each session yields its lines in order; sessions are interleaved by the main loop.

    def brute_force(self):
        """A bot guessing passwords, in the shapes the various sshd versions log."""
        rng = self.rng
        host = self.book.attacker()
        shown = host
        if ":" not in host and rng.random() < 0.02:
            shown = "::ffff:" + host
        pid = self.pid()
        port = self.port()
        injected = rng.random() < 0.01
        user = rng.choice(INJECTION_USERS) if injected else rng.choice(BOT_USERS)
        invalid = user != "root" and (injected or rng.random() < 0.7)
        sshd = lambda msg, kind, h=host: Line("sshd", pid, msg, kind, h)  # noqa: E731
        if invalid:
            yield sshd(f"Invalid user {user} from {shown} port {port}", "invalid_user")
            yield Line("sshd", pid, "pam_unix(sshd:auth): check pass; user unknown", "noise")
        attempts = rng.choice([1, 1, 2, 3, 3, 6])
        for attempt in range(attempts):
            if attempt == 0 or rng.random() < 0.5:
                # pam_unix names the user only when it exists.
                tail = "" if invalid else f"  user={user}"
                yield sshd(
                    "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 "
                    f"tty=ssh ruser= rhost={shown}{tail}",
                    "pam_unix_auth_failure",
                )
            if rng.random() < 0.08:
                yield sshd(
                    f"Failed keyboard-interactive/pam for {'invalid user ' if invalid else ''}"
                    f"{user} from {shown} port {port} ssh2",
                    "failed_keyboard_interactive",
                )
            elif invalid:
                yield sshd(
                    f"Failed password for invalid user {user} from {shown} port {port} ssh2",
                    "failed_password_invalid",
                )
            else:
                yield sshd(
                    f"Failed password for {user} from {shown} port {port} ssh2",
                    "failed_password",
                )
        if attempts == 6:
            # MaxAuthTries reached: one event, which OpenSSH 7.3+ reports with an error line
            # and then the disconnect (7.5+ names the address there; 7.3 and 7.4 do not);
            # before 7.3 only the disconnect, naming the user but not the address.
            if self.openssh != "6":
                yield sshd(
                    f"error: maximum authentication attempts exceeded for "
                    f"{'invalid user ' if invalid else ''}{user} from {shown} port {port} ssh2 [preauth]",
                    "max_auth_attempts",
                )
            # Drawn in every mode, so that the rest of the log is the same whatever --openssh.
            with_host = rng.random() < 0.5
            if self.openssh == "7.5" or (self.openssh == "mixed" and with_host):
                who = "invalid user" if invalid else "authenticating user"
                yield sshd(
                    f"Disconnecting {who} {user} {shown} port {port}: "
                    "Too many authentication failures [preauth]",
                    "too_many_failures_with_host",
                )
            else:
                # The address is only on other lines of the same pid. The label still names
                # the connection's client, to check tools that follow the pid.
                wording = "" if self.openssh == "7.3" else f" for {user}"
                yield Line(
                    "sshd",
                    pid,
                    f"Disconnecting: Too many authentication failures{wording} [preauth]",
                    "hostless_failure",
                    host,
                )
            if attempts > 1 and rng.random() < 0.3:
                yield Line(
                    "sshd",
                    pid,
                    f"PAM {attempts - 1} more authentication failures; logname= uid=0 euid=0 "
                    f"tty=ssh ruser= rhost={shown}" + ("" if invalid else f"  user={user}"),
                    "noise_pam_more",
                    host,
                )
            return
        ending = rng.random()
        if ending < 0.55:
            if invalid:
                yield sshd(
                    f"Connection closed by invalid user {user} {shown} port {port} [preauth]",
                    "closed_invalid_user",
                )
            else:
                yield sshd(
                    f"Connection closed by authenticating user {user} {shown} port {port} [preauth]",
                    "closed_authenticating_user",
                )
        elif ending < 0.8:
            yield Line(
                "sshd",
                pid,
                f"Received disconnect from {shown} port {port}:11: Bye Bye [preauth]",
                "noise_received_disconnect",
                host,
            )
            if invalid:
                yield sshd(
                    f"Disconnected from invalid user {user} {shown} port {port} [preauth]",
                    "disconnected_invalid_user",
                )
            else:
                yield sshd(
                    f"Disconnected from authenticating user {user} {shown} port {port} [preauth]",
                    "closed_authenticating_user",
                )
        else:
            yield Line(
                "sshd",
                pid,
                f"Connection reset by {shown} port {port} [preauth]",
                "noise_connection_reset",
                host,
            )

    def rare_failure(self):
        """Shapes that are real but uncommon."""
        rng = self.rng
        host = self.book.attacker()
        pid = self.pid()
        port = self.port()
        roll = rng.random()
        if roll < 0.3:
            user = rng.choice(["root", "admin", "oracle"])
            yield Line(
                "sshd",
                pid,
                f"User {user} from {host} not allowed because not listed in AllowUsers",
                "not_allowed_users",
                host,
            )
        elif roll < 0.5:
            yield Line(
                "sshd",
                pid,
                f"error: PAM: Authentication failure for {rng.choice(BOT_USERS)} from {host}",
                "pam_error_auth_failure",
                host,
            )
        elif roll < 0.6:
            yield Line(
                "sshd",
                pid,
                f"error: Received disconnect from {host} port {port}:3: "
                "com.jcraft.jsch.JSchException: Auth fail [preauth]",
                "received_disconnect_auth_fail",
                host,
            )
        else:
            yield Line(
                "sshd",
                pid,
                f"Unable to negotiate with {host} port {port}: no matching {rng.choice(KEX_ALGS)} [preauth]",
                "noise_unable_to_negotiate",
                host,
            )

    def scanner(self):
        """Port scanners and banner grabbers: no authentication attempted."""
        rng = self.rng
        host = self.book.attacker()
        pid = self.pid()
        port = self.port()
        roll = rng.random()
        if roll < 0.4:
            yield Line(
                "sshd",
                pid,
                f"Did not receive identification string from {host} port {port}",
                "noise_no_identification",
                host,
            )
        elif roll < 0.6:
            yield Line(
                "sshd",
                pid,
                "error: kex_exchange_identification: Connection closed by remote host",
                "noise_kex",
            )
            yield Line(
                "sshd", pid, f"Connection closed by {host} port {port}", "noise_closed", host
            )
        elif roll < 0.8:
            yield Line(
                "sshd",
                pid,
                f"Connection closed by {host} port {port} [preauth]",
                "noise_closed_preauth",
                host,
            )
        else:
            yield Line(
                "sshd",
                pid,
                f"banner exchange: Connection from {host} port {port}: invalid format",
                "noise_banner",
                host,
            )

    def legit_login(self):
        rng = self.rng
        host = self.book.legitimate()
        user = rng.choice(LEGIT_USERS)
        pid = self.pid()
        port = self.port()
        uid = 1000 + LEGIT_USERS.index(user)
        self.session_id += 1
        session = self.session_id
        method = "publickey" if rng.random() < 0.85 else "password"
        if method == "publickey":
            if rng.random() < 0.15:
                # A client offering a key the server does not know before the right one.
                yield Line(
                    "sshd",
                    pid,
                    f"Failed publickey for {user} from {host} port {port} ssh2: "
                    f"RSA {self.fingerprint()}",
                    "noise_failed_publickey",
                    host,
                )
            suffix = f": ED25519 {self.fingerprint()}"
        else:
            suffix = ""
        yield Line(
            "sshd",
            pid,
            f"Accepted {method} for {user} from {host} port {port} ssh2{suffix}",
            "noise_accepted",
            host,
        )
        yield Line(
            "sshd",
            pid,
            f"pam_unix(sshd:session): session opened for user {user}(uid={uid}) by (uid=0)",
            "noise",
        )
        yield Line("systemd-logind", 612, f"New session {session} of user {user}.", "noise")
        if rng.random() < 0.3:
            for _ in range(rng.randint(1, 3)):
                yield Line(
                    "sudo",
                    None,
                    f"   {user} : TTY=pts/{rng.randint(0, 4)} ; PWD=/home/{user} ; USER=root ; "
                    f"COMMAND={rng.choice(SUDO_COMMANDS)}",
                    "noise",
                )
                yield Line(
                    "sudo",
                    None,
                    f"pam_unix(sudo:session): session opened for user root(uid=0) by {user}(uid={uid})",
                    "noise",
                )
                yield Line(
                    "sudo", None, "pam_unix(sudo:session): session closed for user root", "noise"
                )
            if rng.random() < 0.05:
                yield Line(
                    "sudo",
                    None,
                    f"pam_unix(sudo:auth): authentication failure; logname={user} uid={uid} "
                    f"euid=0 tty=/dev/pts/0 ruser={user} rhost=  user={user}",
                    "noise",
                )
        yield Line(
            "sshd",
            pid,
            f"Received disconnect from {host} port {port}:11: disconnected by user",
            "noise_received_disconnect",
            host,
        )
        yield Line(
            "sshd", pid, f"Disconnected from user {user} {host} port {port}", "noise", host
        )
        yield Line(
            "sshd", pid, f"pam_unix(sshd:session): session closed for user {user}", "noise"
        )
        yield Line("systemd-logind", 612, f"Session {session} logged out. Waiting for processes to exit.", "noise")
        yield Line("systemd-logind", 612, f"Removed session {session}.", "noise")

    def cron(self):
        pid = self.pid()
        yield Line(
            "CRON",
            pid,
            "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
            "noise",
        )
        yield Line("CRON", pid, f"(root) CMD ({self.rng.choice(CRON_COMMANDS)})", "noise")
        yield Line("CRON", pid, "pam_unix(cron:session): session closed for user root", "noise")

    def impostor(self):
        """Another program writing an sshd-like failure (`logger`, a web app): not sshd's."""
        host = self.book.attacker()
        yield Line(
            self.rng.choice(["myapp", "logger", "sshd-wrapper.sh"]),
            self.pid(),
            f"Failed password for root from {host} port {self.port()} ssh2",
            "noise_other_program",
            host,
        )

    def sessions(self):
        """Session kinds with weights tuned so that about 20% of lines are failures."""
        kinds = [
            (self.brute_force, 0.280),
            (self.rare_failure, 0.020),
            (self.scanner, 0.120),
            (self.legit_login, 0.520),
            (self.cron, 0.058),
            (self.impostor, 0.002),
        ]
        makers = [k for k, _ in kinds]
        weights = [w for _, w in kinds]
        while True:
            yield self.rng.choices(makers, weights=weights, k=1)[0]()

    def lines(self, count: int):
        """Interleaves up to a few concurrent sessions, as a busy sshd does."""
        active = []
        new_sessions = self.sessions()
        produced = 0
        while produced < count:
            while len(active) < 6:
                active.append(next(new_sessions))
            index = self.rng.randrange(len(active))
            try:
                line = next(active[index])
            except StopIteration:
                active.pop(index)
                continue
            # ~1M lines over about three days of a busy server.
            self.clock += timedelta(milliseconds=self.rng.randint(0, 520))
            produced += 1
            yield self.clock, line


def syslog_line(when: datetime, line: Line) -> str:
    stamp = f"{MONTHS[when.month - 1]} {when.day:>2} {when:%H:%M:%S}"
    tag = f"{line.program}[{line.pid}]" if line.pid is not None else line.program
    return f"{stamp} {HOSTNAME} {tag}: {line.message}\n"


def expected_host(host: str | None) -> str | None:
    """The address a filter should report: IPv4-mapped IPv6 as IPv4, IPv6 compressed."""
    if host is None:
        return None
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="where to write the log")
    parser.add_argument("-n", "--lines", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument(
        "--start",
        default="2026-11-23T00:00:00",
        help="time of the first line (local time; the log spans about three days per 1M lines)",
    )
    parser.add_argument(
        "--labels",
        help="also write a TSV: line number, kind, expected host (empty when none; for a "
        "failure line without an address, the connection's client), 1 when the user name "
        "carries a forged address",
    )
    parser.add_argument(
        "--openssh",
        choices=["mixed", "7.5", "7.3", "6"],
        default="mixed",
        help="how the server reports a client reaching MaxAuthTries: as OpenSSH 7.5 and later "
        "(error line, then a disconnect naming the address), 7.3-7.4 (error line, then a "
        "disconnect without address), before 7.3 (only a disconnect naming the user), or mixed: "
        "the error line, then either a 7.5 disconnect or a host-less one naming the user, half "
        "and half (a coverage mix no single sshd writes; the default, and the log of the "
        "earlier benchmarks)",
    )
    args = parser.parse_args()

    generator = Generator(args.seed, datetime.fromisoformat(args.start), args.openssh)
    truth = Truth()
    labels = open(args.labels, "w", encoding="utf-8") if args.labels else None
    with open(args.path, "w", encoding="utf-8") as out:
        for number, (when, line) in enumerate(generator.lines(args.lines), start=1):
            out.write(syslog_line(when, line))
            truth.lines += 1
            truth.kinds[line.kind] += 1
            host = expected_host(line.host)
            injected = any(u in line.message for u in INJECTION_USERS)
            if line.kind in FAILURE_KINDS:
                truth.failure_hosts.add(host)
                if ":" in host:
                    truth.failure_hosts_v6.add(host)
                if injected:
                    truth.injection_lines += 1
            if labels:
                labels.write(f"{number}\t{line.kind}\t{host or ''}\t{int(injected)}\n")
    if labels:
        labels.close()

    failures = sum(truth.kinds[k] for k in FAILURE_KINDS)
    summary = {
        "path": args.path,
        "seed": args.seed,
        "lines": truth.lines,
        "failure_lines": failures,
        "failure_ratio": round(failures / max(truth.lines, 1), 4),
        "hostless_failure_lines": truth.kinds["hostless_failure"],
        "distinct_failure_hosts": len(truth.failure_hosts),
        "distinct_failure_hosts_ipv6": len(truth.failure_hosts_v6),
        "injection_failure_lines": truth.injection_lines,
        "failure_kinds": {k: truth.kinds[k] for k in FAILURE_KINDS},
        "other_kinds": {
            k: v for k, v in sorted(truth.kinds.items()) if k not in FAILURE_KINDS
        },
    }
    with open(args.path + ".truth.json", "w", encoding="utf-8") as side:
        json.dump(summary, side, indent=2)
        side.write("\n")
    print(
        f"{truth.lines} lines, {failures} failure lines ({summary['failure_ratio']:.1%}), "
        f"{summary['distinct_failure_hosts']} distinct failure hosts "
        f"({summary['distinct_failure_hosts_ipv6']} IPv6), "
        f"{summary['hostless_failure_lines']} host-less failure lines",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
