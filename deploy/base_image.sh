#!/usr/bin/env bash
# A local bookworm base image for the Dockerfile, made without a registry: debootstrap a minimal
# Debian bookworm root file system (python3 is 3.11 there, openjdk-17 is in main), import it with
# buildah, and build the image on it with --build-arg BASE_IMAGE=<this image>.
#
#   deploy/base_image.sh [image name]          # default localhost/r2led-base:bookworm
#
# Needs root, debootstrap and buildah (apt-get install -y debootstrap buildah).
# Environment (all optional):
#   R2LED_IMAGE_WORK   scratch folder for the root file system (default /var/tmp/r2led-image)
#   DEBIAN_MIRROR      the Debian mirror (default http://deb.debian.org/debian)
#   R2LED_EXTRA_CA     a folder of extra CA certificates (*.crt) to trust inside the base, for networks
#                      whose egress re-signs TLS (default: this machine's /usr/local/share/ca-certificates)
#
# The base holds what the Dockerfile expects of python:3.11-slim-bookworm: python3 (3.11) with venv
# and ensurepip, ca-certificates, and `python` on PATH. apt's lists are dropped, as in the public image.
set -euo pipefail

IMAGE="${1:-localhost/r2led-base:bookworm}"
WORK="${R2LED_IMAGE_WORK:-/var/tmp/r2led-image}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
EXTRA_CA="${R2LED_EXTRA_CA:-/usr/local/share/ca-certificates}"
ROOTFS="$WORK/rootfs-bookworm"

[[ "$(id -u)" == 0 ]] || { echo "base_image.sh: debootstrap and buildah need root" >&2; exit 2; }
for tool in debootstrap buildah; do
  command -v "$tool" >/dev/null || { echo "base_image.sh: no $tool; apt-get install -y $tool" >&2; exit 2; }
done

rm -rf "$ROOTFS"
mkdir -p "$WORK"
# minbase: essential + apt only (~200 MB); the packages python:3.11-slim-bookworm brings that matter here.
debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
  bookworm "$ROOTFS" "$MIRROR"

# The image's apt sources: the same suites as the public image (bookworm, -updates, -security).
cat > "$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES

pip_cert=()
if compgen -G "$EXTRA_CA/*.crt" >/dev/null; then
  cp "$EXTRA_CA"/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
  chroot "$ROOTFS" update-ca-certificates
  # pip's vendored certifi does not read the system store; Java's store is rebuilt from it when
  # openjdk (ca-certificates-java) is installed on top.
  pip_cert=(--env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
            --env REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt)
fi
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin

container="$(buildah from scratch)"
trap 'buildah rm "$container" >/dev/null 2>&1 || true' EXIT
mountpoint="$(buildah mount "$container")"
tar -C "$ROOTFS" -cf - . | tar -C "$mountpoint" -xpf -
buildah umount "$container" >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
  "${pip_cert[@]}" --cmd python3 --os linux --arch "$(dpkg --print-architecture)" \
  --label org.opencontainers.image.description="debootstrap bookworm minbase with python3.11 (r2led base)" \
  "$container"
buildah commit --rm "$container" "$IMAGE"
trap - EXIT
rm -rf "$ROOTFS"
buildah images "$IMAGE"
