#!/usr/bin/env bash
# Builds the vulngate container image with podman (or buildah), reproducibly:
#   1. cargo build --release (a no-op when target/release is up to date);
#   2. stages a root filesystem: the binary without its debug info, the shared libraries
#      `ldd` lists and their loader, Debian's CA certificates, passwd/group with the
#      nonroot user 65532, an empty /tmp; sorted, with fixed owners, modes and mtimes;
#   3. builds manifests/image/Containerfile FROM scratch on it, with the commit time as
#      SOURCE_DATE_EPOCH (the `created` label and every timestamp of the image).
# The same commit gives the same image digest.
#
# Usage: bash manifests/image/build.sh [IMAGE]     (default: localhost/vulngate:VERSION)
# Env:   SOURCE_DATE_EPOCH  override the commit time
#        VULNGATE_SOURCE    the org.opencontainers.image.source label (default: the git
#                           remote `origin`)
#        BUILDER            podman (default) or buildah
#        IIDFILE            also write the image id to this file
# Needs: cargo, git, ldd, objcopy (binutils), ca-certificates, podman or buildah
#        (tests/setup.d/image.sh installs the Debian packages).
set -euo pipefail
cd "$(dirname "$0")/../.."
root_dir="$PWD"

die() { echo "manifests/image/build.sh: $*" >&2; exit 1; }

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
[ -n "$version" ] || die "no version in Cargo.toml"
image="${1:-localhost/vulngate:$version}"
builder="${BUILDER:-podman}"
command -v "$builder" >/dev/null || die "$builder is missing (tests/setup.d/image.sh installs it)"
command -v objcopy >/dev/null || die "objcopy is missing (Debian package binutils)"
certs_dir=/usr/share/ca-certificates/mozilla
[ -d "$certs_dir" ] || die "$certs_dir is missing (Debian package ca-certificates)"

revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  echo "manifests/image/build.sh: warning: uncommitted changes; the image is labelled $revision" >&2
fi
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"
source_url="${VULNGATE_SOURCE:-$(git remote get-url origin 2>/dev/null || echo unknown)}"

cargo build --release --locked --bin vulngate
binary="$root_dir/target/release/vulngate"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
rootfs="$stage/rootfs"
umask 022
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp"

# The release profile keeps line tables (debug = 1) for backtraces on the build
# machine; the image needs none of it. --strip-debug leaves the symbol table, so a
# panic's backtrace still names functions.
objcopy --strip-debug "$binary" "$rootfs/usr/local/bin/vulngate"
chmod 0755 "$rootfs/usr/local/bin/vulngate"

# Every shared library the binary links, and the loader it names, at the paths the
# loader looks them up at (the resolved file, not the host's merged-/usr symlinks).
libs="$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)"
[ -n "$libs" ] || die "ldd lists no libraries for $binary"
for lib in $libs; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
  chmod 0755 "$rootfs$lib"
done

# The scanners' and registries' TLS: Debian's ca-certificates bundle, built from the
# package's own files (not /etc/ssl/certs, which may hold certificates added locally).
find "$certs_dir" -name '*.crt' -print0 | LC_ALL=C sort -z | xargs -0 cat \
  >"$rootfs/etc/ssl/certs/ca-certificates.crt"

printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
  'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$rootfs/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$rootfs/etc/group"
printf '%s\n' 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"

# Fixed modes and times, so the layer depends only on the files' contents.
find "$rootfs" -type d -exec chmod 0755 {} +
find "$rootfs/etc" -type f -exec chmod 0644 {} +
chmod 1777 "$rootfs/tmp"
find "$rootfs" -exec touch -h -d "@$epoch" {} +

cp manifests/image/Containerfile "$stage/Containerfile"
args=(
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision"
  --build-arg "CREATED=$created" --build-arg "SOURCE=$source_url"
  --timestamp "$epoch" -f "$stage/Containerfile" -t "$image"
)
[ -n "${IIDFILE:-}" ] && args+=(--iidfile "$IIDFILE")
# --layers=false: one commit for the whole Containerfile. With intermediate images, two
# builds running at once could each find the other's intermediate image and record it as
# the base (org.opencontainers.image.base.name), giving one commit two image digests.
case "$builder" in
  podman) podman build --no-cache --layers=false --quiet "${args[@]}" "$stage" >/dev/null ;;
  buildah) buildah build --no-cache --layers=false --quiet "${args[@]}" "$stage" >/dev/null ;;
  *) die "BUILDER must be podman or buildah" ;;
esac
echo "built $image ($("$builder" image inspect --format '{{.Id}}' "$image"))"
