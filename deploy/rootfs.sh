#!/bin/sh
# Assembles the runtime image's root folder from this Debian stage: logjail, the firewall tools
# (iptables and ip6tables in both nft and legacy flavours, because logjail uses whichever holds
# Docker's chains on the host), ipset, journalctl, tini and busybox, plus every shared library
# they load, found with ldd rather than listed by hand so that a Debian update cannot silently
# leave one out.
#
#   sh rootfs.sh OUT
set -eu

out=${1:?usage: rootfs.sh OUT}
mkdir -p "$out"

# Debian bookworm merges /bin, /sbin and /lib into /usr; keep the same links, so that paths
# compiled into binaries (the ELF interpreter /lib64/ld-linux-x86-64.so.2) resolve.
mkdir -p "$out/usr/bin" "$out/usr/sbin" "$out/usr/lib" "$out/usr/local/bin"
for dir in bin sbin lib lib64; do
    if [ -L "/$dir" ]; then
        ln -sfn "usr/$dir" "$out/$dir"
        mkdir -p "$out/usr/$dir"
    fi
done

# Copies a file to the same canonical place under $out (symlinks followed, so a soname link
# becomes a regular file with the soname).
place() {
    src=$1
    dest="$out$(realpath "$(dirname "$src")")/$(basename "$src")"
    [ -e "$dest" ] && return 0
    mkdir -p "$(dirname "$dest")"
    cp -L --preserve=mode "$src" "$dest"
}

# A program or plugin and the libraries ldd says it loads (and the ELF interpreter).
with_libraries() {
    place "$1"
    # A library the program needs but this stage lacks would only show at run time.
    if ldd "$1" 2>/dev/null | grep -q 'not found'; then
        echo "rootfs.sh: $1 needs a library that is not installed:" >&2
        ldd "$1" | grep 'not found' >&2
        exit 1
    fi
    ldd "$1" 2>/dev/null | while read -r first second third _; do
        case "$first" in /*) place "$first" ;; esac
        case "$third" in /*) place "$third" ;; esac
    done
}

with_libraries /usr/local/bin/logjail

# iptables: one multi-call binary per flavour; the command names are links to it.
for flavour in nft legacy; do
    multi=/usr/sbin/xtables-$flavour-multi
    with_libraries "$multi"
    for family in iptables ip6tables; do
        for suffix in "" -save -restore; do
            ln -sf "xtables-$flavour-multi" "$out/usr/sbin/$family-$flavour$suffix"
        done
    done
done
# Plain `iptables` for operators: Debian's default (nft). logjail itself always calls the
# flavour it detected, and `logjail status` says which one that is.
for family in iptables ip6tables; do
    for suffix in "" -save -restore; do
        ln -sf "$family-nft$suffix" "$out/usr/sbin/$family$suffix"
    done
done
# Matches and targets (conntrack, set, REJECT, …) are plugins loaded at run time.
for plugin in /usr/lib/*/xtables/*.so; do
    with_libraries "$plugin"
done

with_libraries /usr/sbin/ipset
with_libraries /usr/bin/journalctl
# tini-static needs no library at all.
cp /usr/bin/tini-static "$out/usr/bin/tini"

# busybox gives `docker exec -it logjail sh` a shell and the usual tools; it never shadows a
# real program copied above.
cp /bin/busybox "$out/usr/bin/busybox"
for applet in $(/bin/busybox --list); do
    case "$applet" in busybox | linuxrc | init) continue ;; esac
    [ -e "$out/usr/bin/$applet" ] || [ -e "$out/usr/sbin/$applet" ] || ln -s busybox "$out/usr/bin/$applet"
done

# iptables resolves protocol names (`-p tcp`) through /etc/protocols.
mkdir -p "$out/etc"
for file in /etc/protocols /etc/services /etc/ethertypes; do
    [ -e "$file" ] && cp "$file" "$out/etc/"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$out/etc/passwd"
printf 'root:x:0:\n' >"$out/etc/group"

mkdir -p "$out/etc/logjail" "$out/var/lib/logjail" "$out/run/logjail" "$out/tmp" "$out/root"
chmod 1777 "$out/tmp"
chmod 0700 "$out/var/lib/logjail" "$out/run/logjail"
ldconfig -r "$out" 2>/dev/null || true
