#!/usr/bin/env python3
"""Compare, line by line, the hosts logjail and fail2ban-regex report for the same log.

Inputs (all produced by bench/compare-fail2ban.sh):
  LOG      the log both tools read
  LABELS   the generator's TSV: line number, kind of line, expected host
  LOGJAIL  `logjail regex --json LOG FILTER` output: one JSON object per failure line
  F2B      `fail2ban-regex -o '@@F2B@@<ip>\\t<matches>' LOG sshd.conf` output: one record per
           failure, the address then the lines that made it, the line being judged last

Prints a Markdown summary: lines where both tools report the same host, lines where they
differ, lines only one of them reports (by kind of line, with the reason), and how both fare
against the generator's ground truth.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

MARK = "@@F2B@@"

# Why the tools part ways on a kind of line. Fail2Ban's sshd filter in its default "normal" mode
# marks some lines <F-NOFAIL> (they only help it remember a host for the connection) and keeps
# some for its ddos/aggressive modes; logjail's built-in filter follows the same policy, so most
# of these should be empty.
REASONS = {
    "pam_unix_auth_failure": "fail2ban's multi-line state: a pam_unix line is only a NOFAIL helper, "
    "but after fail2ban misses a session's Failed line (forged user name) it reports a later line "
    "of the same sshd pid instead",
    "noise_received_disconnect": "fail2ban's multi-line state (see pam_unix_auth_failure)",
    "noise_connection_reset": "fail2ban's multi-line state (see pam_unix_auth_failure)",
    "closed_invalid_user": "fail2ban's multi-line state (see pam_unix_auth_failure)",
    "closed_authenticating_user": "disconnect before auth: fail2ban counts it only in ddos/aggressive mode",
    "disconnected_invalid_user": "disconnect before auth: fail2ban counts it only in ddos/aggressive mode",
    "too_many_failures_with_host": "the second line of a MaxAuthTries event (after `maximum "
    "authentication attempts exceeded`); neither tool should count it",
    "hostless_failure": "no address on the line: fail2ban takes it from an earlier line of the same "
    "pid (multi-line state); logjail judges each line alone. After `maximum authentication attempts "
    "exceeded` (OpenSSH 7.3-7.4, and the mixed log) it is the same event again, which fail2ban "
    "counts twice",
    "noise_other_program": "not written by sshd",
}
FORGED = " (forged user name)"
FORGED_REASON = ("the user name contains ` from ADDR`: fail2ban's pattern for invalid users refuses "
                 "such names and drops the line; logjail reports the real host")


def reason(kind: str, title: str) -> str:
    base = kind.removesuffix(FORGED)
    if kind != base and title == "only logjail" and base.startswith(("failed_", "invalid_user")):
        return FORGED_REASON
    return REASONS.get(base, "")


def read_labels(path: str) -> tuple[dict[int, tuple[str, str]], set[int]]:
    """Kind and expected host per line, and the lines with a forged address in the user name."""
    labels, injections = {}, set()
    with open(path, encoding="utf-8") as handle:
        for row in handle:
            number, kind, host, injected = row.rstrip("\n").split("\t")
            labels[int(number)] = (kind, host)
            if injected == "1":
                injections.add(int(number))
    return labels, injections


def read_logjail(path: str) -> dict[int, str]:
    hosts = {}
    with open(path, encoding="utf-8") as handle:
        for row in handle:
            row = row.strip()
            if row:
                record = json.loads(row)
                hosts[int(record["line"])] = record["host"]
    return hosts


def read_fail2ban(path: str) -> list[tuple[str, str]]:
    """(host, judged line) per failure; the judged line is the last of the record's lines."""
    records: list[tuple[str, str]] = []
    host, last = None, None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for row in handle:
            row = row.rstrip("\n")
            if row.startswith(MARK):
                if host is not None:
                    records.append((host, last))
                host, _, last = row[len(MARK):].partition("\t")
            elif host is not None:
                last = row
    if host is not None:
        records.append((host, last))
    return records


def number_fail2ban(log: str, records: list[tuple[str, str]]) -> tuple[dict[int, str], int]:
    """Finds each record's line number by walking the log in order (records come in log order)."""
    hosts: dict[int, str] = {}
    unplaced = 0
    with open(log, encoding="utf-8", errors="replace") as handle:
        lines = enumerate((row.rstrip("\r\n") for row in handle), start=1)
        for host, text in records:
            for number, row in lines:
                if row == text:
                    hosts[number] = host
                    break
            else:
                unplaced += 1
                break
    return hosts, unplaced


def main() -> int:
    log, labels_path, logjail_path, f2b_path = sys.argv[1:5]
    labels, injections = read_labels(labels_path)
    logjail = read_logjail(logjail_path)
    f2b_records = read_fail2ban(f2b_path)
    fail2ban, unplaced = number_fail2ban(log, f2b_records)

    both_same, both_differ = [], []
    only_logjail, only_fail2ban = defaultdict(list), defaultdict(list)
    for number in sorted(set(logjail) | set(fail2ban)):
        ours, theirs = logjail.get(number), fail2ban.get(number)
        kind = labels.get(number, ("?", ""))[0]
        if number in injections:
            kind += FORGED
        if ours is not None and theirs is not None:
            (both_same if ours == theirs else both_differ).append(number)
        elif ours is not None:
            only_logjail[kind].append(number)
        else:
            only_fail2ban[kind].append(number)

    print("### Agreement, line by line")
    print()
    print(f"- logjail failure lines: {len(logjail)}; fail2ban-regex failure lines: {len(fail2ban)}"
          + (f" ({unplaced} records could not be placed in the log)" if unplaced else ""))
    print(f"- **both report the line, same host: {len(both_same)}**")
    print(f"- both report the line, different host: {len(both_differ)}")
    for number in both_differ[:5]:
        print(f"  - line {number} ({labels.get(number, ('?', ''))[0]}): logjail {logjail[number]}, "
              f"fail2ban {fail2ban[number]}, generator expects {labels.get(number, ('', '?'))[1]}")
    for title, table in (("only logjail", only_logjail), ("only fail2ban-regex", only_fail2ban)):
        total = sum(len(v) for v in table.values())
        print(f"- {title}: {total}")
        for kind, numbers in sorted(table.items(), key=lambda kv: -len(kv[1])):
            why = reason(kind, title)
            examples = ", ".join(str(n) for n in numbers[:3])
            print(f"  - {kind}: {len(numbers)} (e.g. lines {examples})" + (f": {why}" if why else ""))

    print()
    print("### Against the generator's ground truth")
    print()
    for name, reported in (("logjail", logjail), ("fail2ban-regex", fail2ban)):
        wrong = [n for n, h in reported.items() if labels.get(n, ("", ""))[1] not in ("", h)]
        unlabeled = [n for n in reported if labels.get(n, ("", ""))[1] == ""]
        no_address = sum(1 for n in reported if labels.get(n, ("", ""))[0] == "hostless_failure")
        print(f"- {name}: {len(reported) - len(wrong) - len(unlabeled)} lines with the expected host "
              f"({no_address} of them on lines that name no address, the host taken from the same "
              f"connection), {len(wrong)} with another host, {len(unlabeled)} on lines no host is "
              "expected for")
        for number in wrong[:3]:
            print(f"  - line {number}: reported {reported[number]}, expected {labels[number][1]}")
    injected = [n for n in injections if labels[n][1]]
    for name, reported in (("logjail", logjail), ("fail2ban-regex", fail2ban)):
        right = sum(1 for n in injected if reported.get(n) == labels[n][1])
        forged = sum(1 for n in injected if n in reported and reported[n] != labels[n][1])
        print(f"- {len(injected)} lines whose user name carries a forged address: {name} reports "
              f"the real host on {right}, the forged one on {forged}, nothing on "
              f"{len(injected) - right - forged}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
