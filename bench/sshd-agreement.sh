#!/usr/bin/env bash
# One event, one failure: how many failures `logjail regex` (built-in sshd filter) and Debian's
# `fail2ban-regex` (stock /etc/fail2ban/filter.d/sshd.conf, normal mode) count on the same
# generated auth.log, and where they part ways, line by line (bench/agreement.py).
#
# Usage: bench/sshd-agreement.sh [LINES] [OPENSSH...]
#   LINES     lines per log (default 200000)
#   OPENSSH   how the generated sshd reports a client reaching MaxAuthTries
#             (bench/gen_sshd_log.py --openssh): 7.5, 7.3, 6 or mixed (default: 7.5 7.3 mixed)
# Environment:
#   LOGJAIL=PATH         a logjail binary to use instead of `cargo build --release`
#   BENCH_DATA_DIR=...   where generated logs are kept between runs (default target/bench-data)
#
# Needs: python3, fail2ban (fail2ban-regex), and cargo unless LOGJAIL is given.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lines=${1:-200000}
shift || true
styles=("$@")
((${#styles[@]})) || styles=(7.5 7.3 mixed)
data_dir=${BENCH_DATA_DIR:-$repo/target/bench-data}
f2b_filter=/etc/fail2ban/filter.d/sshd.conf

if ! [[ $lines =~ ^[0-9]+$ ]] || ((lines == 0)); then
    echo "usage: $0 [LINES] [OPENSSH...]" >&2
    exit 64
fi
for tool in python3 fail2ban-regex; do
    command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 69; }
done
[[ -r $f2b_filter ]] || { echo "$f2b_filter is missing (apt-get install fail2ban)" >&2; exit 69; }

if [[ -n ${LOGJAIL:-} ]]; then
    logjail=$LOGJAIL
else
    echo "building logjail (release)..." >&2
    cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
    logjail=$repo/target/release/logjail
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/logjail-agreement.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$data_dir"
generator_hash=$(sha256sum "$repo/bench/gen_sshd_log.py" | cut -c1-10)

summary=$work/summary.md
{
    echo "| sshd wording (\`--openssh\`) | logjail failures | fail2ban-regex failures | difference |"
    echo "|---|---:|---:|---:|"
} >"$summary"
details=$work/details.md
: >"$details"

for style in "${styles[@]}"; do
    log=$data_dir/auth-$lines-$style-$generator_hash.log
    labels=$data_dir/auth-$lines-$style-$generator_hash.labels.tsv
    if [[ ! -s $log || ! -s $labels ]]; then
        echo "generating $log..." >&2
        python3 "$repo/bench/gen_sshd_log.py" "$log" --lines "$lines" --openssh "$style" --labels "$labels"
    fi
    echo "$style: logjail regex --json, fail2ban-regex with per-failure output..." >&2
    "$logjail" regex --json "$log" sshd >"$work/logjail.jsonl"
    fail2ban-regex -o $'@@F2B@@<ip>\t<matches>' "$log" "$f2b_filter" >"$work/fail2ban.rows"
    ours=$(grep -c . "$work/logjail.jsonl" || true)
    theirs=$(grep -c '^@@F2B@@' "$work/fail2ban.rows" || true)
    python3 - "$style" "$ours" "$theirs" >>"$summary" <<'PY'
import sys
style, ours, theirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print(f"| {style} | {ours:,} | {theirs:,} | {ours - theirs:+,} ({(ours - theirs) / theirs:+.2%}) |")
PY
    {
        echo "#### \`--openssh $style\`"
        echo
        python3 "$repo/bench/agreement.py" "$log" "$labels" "$work/logjail.jsonl" "$work/fail2ban.rows" \
            | sed -n '/^- /,/^$/p' | sed '/^$/q'
    } >>"$details"
done

echo "## sshd failures counted: logjail regex vs fail2ban-regex, $lines lines"
echo
echo "logjail: built-in \`sshd\` filter; fail2ban: \`fail2ban-regex $(fail2ban-regex --version | awk '{print $2}')\` with \`$f2b_filter\` (normal mode)."
echo
cat "$summary"
echo
cat "$details"
echo "Command: bench/sshd-agreement.sh $lines ${styles[*]}"
