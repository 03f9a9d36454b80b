#!/usr/bin/env bash
# Build the `floe` and `floe-operator` container images without a daemon (`make images`).
#
#   e2e/scripts/images.sh
#
#  1. installs the build packages (install-deps.sh --build-only), buildah and the CA bundle from
#     Debian when missing (apt-get; sudo when not root)
#  2. builds both binaries as static executables (release, see "Static binaries" below) into
#     target/image/, a target dir of their own so the workspace's debug build is never locked
#  3. builds images/<name>.Dockerfile with buildah on vfs storage kept under target/images/buildah
#     (no daemon, no overlay mounts, nothing shared with /var/lib/containers)
#  4. writes target/images/<name>-<version>.oci.tar (oci-archive), the version being the crate's,
#     and verifies each archive with images/verify_archive.py: linux/<host arch>, numeric non-root
#     user, entrypoint, labels, ports, a static binary and the CA bundle as its only files; as root
#     it also runs `<binary> --version` chrooted into the image's files as that user (the images
#     themselves cannot run here: podman/crun fail in this sandbox)
#
# Idempotent: cargo rebuilds only what changed; the buildah store is emptied on exit, so nothing
# accumulates; an archive is written under a temporary name and takes its final name only once it
# verified (the previous one of the same version is removed first, so a failed run leaves none).
# Works from any cwd. Environment:
#   FLOE_IMAGE_REPOSITORY  where the archives say the images belong (default ghcr.io/floe-dev, as in
#                          the chart and the operator's --agent-image): <repository>/<name>:<version>
#   FLOE_IMAGE_SOURCE      org.opencontainers.image.source label (default: none, no canonical URL yet)
#   SOURCE_DATE_EPOCH      image creation time (default: the commit time of HEAD, so a rebuild of
#                          the same commit with the same binaries yields the same image digest)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
OUT="$ROOT/target/images"
CONTEXT="$OUT/context"
STORE="$OUT/buildah"
CARGO_TARGET="$ROOT/target/image"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
REPOSITORY="${FLOE_IMAGE_REPOSITORY:-ghcr.io/floe-dev}"
VERIFY="$ROOT/images/verify_archive.py"

log() { echo "[images] $*"; }
fail() { echo "[images] error: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# --- 1. Tools -------------------------------------------------------------------------------------
"$ROOT/e2e/scripts/install-deps.sh" --build-only || fail "installing the build packages failed (e2e/scripts/install-deps.sh --build-only)"
missing=()
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
[ -s "$CA_BUNDLE" ] || missing+=(ca-certificates)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q \
        && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
        || fail "apt-get install ${missing[*]} failed"
fi

case "$(uname -m)" in
    x86_64) ARCH=amd64 ;;
    aarch64) ARCH=arm64 ;;
    *) fail "unsupported host architecture $(uname -m) (images are built for the host: x86_64 or aarch64)" ;;
esac
RUST_TARGET="$(uname -m)-unknown-linux-gnu"

# Each image carries its crate's version (today both inherit the workspace's).
versions="$(cd "$ROOT" && cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
packages = {p["name"]: p["version"] for p in json.load(sys.stdin)["packages"]}
print(packages["floe-agent"], packages["floe-operator"])')" \
    || fail "cargo metadata could not read the versions of floe-agent and floe-operator"
read -r FLOE_VERSION OPERATOR_VERSION <<<"$versions"
REVISION="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
source_label=()
if [ -n "${FLOE_IMAGE_SOURCE:-}" ]; then
    source_label=(--label "org.opencontainers.image.source=$FLOE_IMAGE_SOURCE")
fi
CREATED="${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}"

# --- 2. Static binaries ---------------------------------------------------------------------------
# Static binaries: glibc's static-pie (`+crt-static` on the gnu target), not musl, because
#  * it needs nothing beyond the pinned toolchain and Debian's build-essential: the musl target is
#    another rustup download (not reachable from every machine) and the C code we link (aws-lc-sys
#    for TLS, zstd-sys, lz4-sys) would need musl-gcc as well;
#  * the agent keeps glibc's malloc, which the tests and benchmarks measure; musl's allocator is
#    much slower under many threads;
#  * since glibc 2.34 the files and dns resolvers are built into libc, so a static binary resolves
#    names from /etc/hosts and /etc/resolv.conf in an image without any shared library (checked
#    with a static probe in a chroot holding only it and those two files). What static glibc
#    cannot do is load other NSS modules (LDAP, mDNS): irrelevant in a container.
# --target is explicit so RUSTFLAGS reaches only the binaries, not build scripts or proc macros.
# The release profile is used with two overrides by environment (Cargo.toml's stays as it is): no
# debug info (faster to build, 5x smaller), symbols kept so a panic's backtrace names functions.
log "building static floe $FLOE_VERSION and floe-operator $OPERATOR_VERSION ($RUST_TARGET, release) in target/image"
(
    cd "$ROOT"
    unset CARGO_ENCODED_RUSTFLAGS
    RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo \
        cargo build --release --locked --target "$RUST_TARGET" --target-dir "$CARGO_TARGET" \
        -p floe-agent --bin floe -p floe-operator --bin floe-operator
) || fail "cargo build of the static binaries failed (see the compiler output above)"
BIN="$CARGO_TARGET/$RUST_TARGET/release"
for binary in floe floe-operator; do
    python3 "$VERIFY" elf "$BIN/$binary" "$ARCH" \
        || fail "$BIN/$binary is not a static $ARCH executable"
done

# --- 3 and 4. Images ------------------------------------------------------------------------------
mkdir -p "$OUT" "$CONTEXT" "$STORE"
# The build context holds exactly what the Dockerfiles copy.
install -m 0555 "$BIN/floe" "$BIN/floe-operator" "$CONTEXT/"
install -m 0444 "$CA_BUNDLE" "$CONTEXT/ca-certificates.crt"

buildah_store=(buildah --root "$STORE/root" --runroot "$STORE/run" --storage-driver vfs)
empty_store() {
    "${buildah_store[@]}" rm --all >/dev/null 2>&1 || true
    "${buildah_store[@]}" rmi --all --force >/dev/null 2>&1 || true
}
scratch=""
cleanup() {
    empty_store
    if [ -n "$scratch" ]; then rm -rf "$scratch"; fi
}
trap cleanup EXIT
empty_store # left over by an interrupted run
scratch="$(mktemp -d "$OUT/.verify.XXXXXX")"

# build_image NAME VERSION [--expose PORT/tcp ...]
build_image() {
    local name="$1" version="$2"
    shift 2
    local archive="$OUT/$name-$version.oci.tar"
    local partial="$OUT/.$name-$version.oci.tar.partial"
    local reference="$REPOSITORY/$name:$version"
    log "building $reference from images/$name.Dockerfile"
    rm -f "$partial" "$archive" # a failed run leaves no archive that looks current
    "${buildah_store[@]}" build --quiet --format oci --pull=never --identity-label=false \
        --timestamp "$CREATED" \
        --build-arg "VERSION=$version" --build-arg "REVISION=$REVISION" \
        "${source_label[@]}" \
        --file "$ROOT/images/$name.Dockerfile" --tag "$reference" "$CONTEXT" >/dev/null \
        || fail "buildah build of images/$name.Dockerfile failed (see above)"
    # The index names the image (org.opencontainers.image.ref.name) for `podman load`, `skopeo
    # copy` and `ctr images import`.
    "${buildah_store[@]}" push --quiet "$reference" "oci-archive:$partial:$reference" \
        || fail "buildah push of $reference to an oci-archive failed (see above)"

    local rootfs="$scratch/$name" reported
    python3 "$VERIFY" archive "$partial" --reference "$reference" --title "$name" --version "$version" --arch "$ARCH" \
        --entrypoint "/$name" --rootfs "$rootfs" "$@" \
        || fail "the $name image does not keep the promises in images/README.md (archive kept at $partial)"
    if [ "$(id -u)" -eq 0 ]; then
        # The binary alone (no shell, no libraries) starts as the image's user.
        reported="$(chroot --userspec=65532:65532 "$rootfs" "/$name" --version)" \
            || fail "/$name --version failed chrooted into the $name image's files as 65532:65532"
        log "/$name --version in a chroot of the image's files as 65532:65532: $reported"
    else
        log "not root: skipped running /$name chrooted into the image's files"
    fi
    mv -f "$partial" "$archive"
    "${buildah_store[@]}" rmi --force "$reference" >/dev/null
    log "wrote ${archive#"$ROOT"/} ($(du -h "$archive" | cut -f1))"
}

build_image floe "$FLOE_VERSION" --expose 9092/tcp --expose 8080/tcp
build_image floe-operator "$OPERATOR_VERSION" --expose 8080/tcp
log "done in ${SECONDS}s"
