#!/usr/bin/env bash
# The sidecar image: its size, and its cold start, from the container's start to logjail
# watching the first labelled container (the daemon has then read its configuration, opened
# the store, laid out the firewall, restored bans and connected to Docker).
#
#   bench/sidecar.sh [RUNS]        (root, a running Docker engine, default 5 runs)
#
# Builds target/release/logjail and the image offline (deploy/build-local.sh, base from
# scripts/test-images). Each run starts the image with host networking like compose does, next
# to one labelled busybox container, and reads two timestamps Docker and logjail wrote: the
# container's State.StartedAt and logjail's "watching container" log event. It also reports
# the whole `docker run` to that event, which adds Docker's own container creation.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
docker=${DOCKER:-/usr/bin/docker}
export DOCKER=$docker

scripts/test-images >/dev/null
cargo build --release --locked -q
deploy/build-local.sh --binary target/release/logjail --tag logjail:bench >/dev/null
size=$("$docker" image inspect -f '{{.Size}}' logjail:bench)

work=$(mktemp -d)
target=logjail-bench-target-$$
sidecar=logjail-bench-sidecar-$$
cleanup() {
    "$docker" rm -fv "$target" "$sidecar" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
cat >"$work/logjail.yaml" <<YAML
log: {format: json}
metrics: {enabled: false}
firewall: {chain_prefix: ljbench}
docker: {require_labels: [logjail.bench=$$]}
jails:
  sshd: {}
YAML
"$docker" run -d --name "$target" --label "logjail.jails=sshd" --label "logjail.bench=$$" \
    logjail-test/busybox:local sleep 3600 >/dev/null

to_ns() { date -d "$1" +%s%N; }
startup_ms=()
total_ms=()
for run in $(seq 1 "$runs"); do
    before=$(date +%s%N)
    "$docker" run -d --name "$sidecar" --network host --cap-add NET_ADMIN --cap-add NET_RAW \
        -v /var/run/docker.sock:/var/run/docker.sock:ro \
        -v /var/lib/docker/containers:/var/lib/docker/containers:ro \
        -v "$work/logjail.yaml:/etc/logjail/logjail.yaml:ro" \
        logjail:bench >/dev/null
    watched=""
    for _ in $(seq 1 100); do
        watched=$("$docker" logs "$sidecar" 2>&1 | grep -m1 '"watching container"' || true)
        [ -n "$watched" ] && break
        sleep 0.1
    done
    [ -n "$watched" ] || { "$docker" logs "$sidecar" >&2; exit 1; }
    started=$("$docker" inspect -f '{{.State.StartedAt}}' "$sidecar")
    at=$(printf '%s' "$watched" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["timestamp"])')
    startup_ms+=("$(( ($(to_ns "$at") - $(to_ns "$started")) / 1000000 ))")
    total_ms+=("$(( ($(to_ns "$at") - before) / 1000000 ))")
    "$docker" rm -fv "$sidecar" >/dev/null
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "image logjail:bench: $(( size / 1024 / 1024 )) MiB ($size bytes)"
echo "cold start, container start -> first container watched: median $(median "${startup_ms[@]}") ms (runs: ${startup_ms[*]})"
echo "docker run -> first container watched:                  median $(median "${total_ms[@]}") ms (runs: ${total_ms[*]})"
