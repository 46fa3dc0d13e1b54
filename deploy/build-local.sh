#!/usr/bin/env bash
# Builds logjail's image without a registry: the binary comes from the host, both bases from a
# local Debian bookworm image that already holds the runtime's packages (scripts/test-images
# makes one with debootstrap from the machine's apt mirror).
#
#   deploy/build-local.sh [--binary PATH] [--base IMAGE] [--tag TAG]
#
# Defaults: target/release/logjail (built with `cargo build --release` when missing),
# logjail-test/debian:bookworm, logjail:local. Prints the image ID.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
binary=""
base=logjail-test/debian:bookworm
tag=logjail:local
docker=${DOCKER:-docker}

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --base) base=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "build-local.sh: unknown argument $1" >&2; exit 64 ;;
    esac
done

if [ -z "$binary" ]; then
    binary=$repo/target/release/logjail
    [ -x "$binary" ] || (cd "$repo" && cargo build --release --locked)
fi
[ -x "$binary" ] || { echo "build-local.sh: $binary is not an executable" >&2; exit 66; }
"$docker" image inspect "$base" >/dev/null 2>&1 || {
    echo "build-local.sh: base image $base not found (scripts/test-images builds one)" >&2
    exit 69
}

# A small context: the deploy folder and the binary, not the whole checkout.
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir "$context/deploy"
cp "$here/Dockerfile" "$here/rootfs.sh" "$context/deploy/"
# Debug information is of no use in the image (a debug build carries ~150 MB of it); the
# symbol table stays, so panics still name their functions.
if command -v strip >/dev/null; then
    strip --strip-debug -o "$context/logjail" "$binary"
else
    cp "$binary" "$context/logjail"
fi

"$docker" build -q -f "$context/deploy/Dockerfile" \
    --build-arg RUST_IMAGE="$base" --build-arg DEBIAN_IMAGE="$base" --build-arg PREBUILT=logjail \
    -t "$tag" "$context"
