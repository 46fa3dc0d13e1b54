#!/usr/bin/env bash
# Times `logjail regex` against Debian's `fail2ban-regex` (stock sshd.conf) on the same generated
# sshd auth.log, one run each, pinned to one core, and checks line by line that both report the
# same host for the same failure.
#
# Usage: bench/compare-fail2ban.sh [LINES]          (default 1000000)
# Environment:
#   BENCH_CORE=0         the core both tools are pinned to (taskset -c)
#   BENCH_DATA_DIR=...   where generated logs are kept between runs (default target/bench-data)
#   BENCH_AGREEMENT=0    skip the line-by-line host comparison (saves two more full runs)
#
# Needs: cargo, python3, fail2ban (fail2ban-regex), util-linux (taskset), and GNU time
# (/usr/bin/time, Debian package `time`, installed here with apt when missing and run as root).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lines=${1:-1000000}
core=${BENCH_CORE:-0}
data_dir=${BENCH_DATA_DIR:-$repo/target/bench-data}
agreement=${BENCH_AGREEMENT:-1}
f2b_filter=/etc/fail2ban/filter.d/sshd.conf

if ! [[ $lines =~ ^[0-9]+$ ]] || ((lines == 0)); then
    echo "usage: $0 [LINES]" >&2
    exit 64
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/logjail-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [[ ! -x /usr/bin/time ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "installing GNU time (/usr/bin/time)..." >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
    else
        echo "GNU time is missing: apt-get install time" >&2
        exit 69
    fi
fi
for tool in python3 fail2ban-regex taskset cargo; do
    command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 69; }
done
[[ -r $f2b_filter ]] || { echo "$f2b_filter is missing (apt-get install fail2ban)" >&2; exit 69; }

echo "building logjail (release)..." >&2
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
logjail=$repo/target/release/logjail

mkdir -p "$data_dir"
# Cached by size and by the generator's own hash, so an edited generator makes a new log.
generator_hash=$(sha256sum "$repo/bench/gen_sshd_log.py" | cut -c1-10)
log=$data_dir/auth-$lines-$generator_hash.log
labels=$data_dir/auth-$lines-$generator_hash.labels.tsv
if [[ ! -s $log || ! -s $labels || ! -s $log.truth.json ]]; then
    echo "generating $log..." >&2
    python3 "$repo/bench/gen_sshd_log.py" "$log" --lines "$lines" --labels "$labels"
fi

# Runs a command once under GNU time, pinned to the core; keeps its output and timings.
measure() {
    local name=$1
    shift
    echo "timing $name: $*" >&2
    taskset -c "$core" /usr/bin/time -v -o "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err" || {
        echo "$name failed:" >&2
        tail -5 "$work/$name.err" >&2
        exit 1
    }
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
measure logjail "$logjail" regex "$log" sshd
# The same stock file fail2ban-regex reads, through logjail's Fail2Ban filter reader.
measure logjail_f2b "$logjail" regex "$log" "$f2b_filter"
measure fail2ban fail2ban-regex "$log" "$f2b_filter"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# One line about the generated log, from the generator's ground truth.
describe_log() {
    python3 - "$1" <<'EOF'
import json, sys
truth = json.load(open(sys.argv[1], encoding="utf-8"))
print(
    f"{truth['failure_lines']:,} failure lines ({truth['failure_ratio']:.1%}), "
    f"{truth['distinct_failure_hosts']:,} distinct attacker addresses "
    f"({truth['distinct_failure_hosts_ipv6']:,} IPv6)",
    end="",
)
EOF
}

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
cores=$(nproc)
{
    echo "## logjail regex vs fail2ban-regex: sshd, $lines lines"
    echo
    echo "Machine: $cores cores, $cpu; both tools pinned to core $core (\`taskset -c $core\`),"
    echo "one run each; load average before/after: $load_before / $load_after."
    echo "logjail: built-in \`sshd\` filter, and \`$f2b_filter\` read by its Fail2Ban filter reader; fail2ban: \`fail2ban-regex $(fail2ban-regex --version | awk '{print $2}')\` with \`$f2b_filter\`."
    echo "Log: \`$(basename "$log")\`, $(describe_log "$log.truth.json")."
    echo
    python3 - "$lines" "$work/logjail.time" "$work/logjail.out" "$work/fail2ban.time" "$work/fail2ban.out" \
        "$work/logjail_f2b.time" "$work/logjail_f2b.out" <<'EOF'
import re, sys

lines = int(sys.argv[1])

def timing(path):
    text = open(path, encoding="utf-8").read()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    seconds = 0.0
    for part in wall.split(":"):
        seconds = seconds * 60 + float(part)
    user = float(re.search(r"User time \(seconds\): (\S+)", text).group(1))
    system = float(re.search(r"System time \(seconds\): (\S+)", text).group(1))
    rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return seconds, user + system, rss_kib / 1024

def matched(path):
    # Both tools end their summary with "Lines: N lines, I ignored, M matched, X missed".
    text = open(path, encoding="utf-8", errors="replace").read()
    found = re.search(r"Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed", text)
    return int(found.group(1)), int(found.group(3))

rows = []
for name, time_path, out_path in (
    ("logjail regex", sys.argv[2], sys.argv[3]),
    ("fail2ban-regex", sys.argv[4], sys.argv[5]),
    ("logjail regex, stock sshd.conf", sys.argv[6], sys.argv[7]),
):
    wall, cpu, rss = timing(time_path)
    read, hits = matched(out_path)
    rows.append((name, read, hits, wall, cpu, rss))

base_wall, base_cpu = rows[1][3], rows[1][4]
print("| tool | lines | matched | wall s | CPU s | lines/s (wall) | lines/s (CPU) | peak RSS MiB | speed-up (wall / CPU) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, read, hits, wall, cpu, rss in rows:
    print(f"| {name} | {read:,} | {hits:,} | {wall:.2f} | {cpu:.2f} | {read / wall:,.0f} | "
          f"{read / cpu:,.0f} | {rss:.1f} | {base_wall / wall:.0f}x / {base_cpu / cpu:.0f}x |")
if any(read != lines for _, read, *_ in rows):
    print()
    print(f"WARNING: a tool did not read all {lines} lines")
EOF
    echo
    echo "\"matched\" counts differ by design: see the agreement below (fail2ban's normal mode and"
    echo "logjail's built-in filter count the same kinds of lines; the generator's wider notion of a"
    echo "failure line also includes pam_unix reports and pre-auth disconnects)."
} | tee "$work/report.md"

if [[ $agreement != 0 ]]; then
    echo >&2
    echo "agreement: logjail regex --json, and fail2ban-regex with per-failure output..." >&2
    "$logjail" regex --json "$log" sshd >"$work/logjail.jsonl"
    fail2ban-regex -o $'@@F2B@@<ip>\t<matches>' "$log" "$f2b_filter" >"$work/fail2ban.rows"
    echo
    python3 "$repo/bench/agreement.py" "$log" "$labels" "$work/logjail.jsonl" "$work/fail2ban.rows"
fi

echo
echo "Command: bench/compare-fail2ban.sh $lines"
