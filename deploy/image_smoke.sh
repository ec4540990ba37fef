#!/usr/bin/env bash
# Smoke-run the image without a container engine: `generate` and then the tiny pipeline inside it,
# each through the image's own deploy/submit.sh (buildah run, chroot isolation), on a fresh
# workspace folder mounted at /app/workspace; then deploy/image_smoke_check.py (also through
# submit.sh) checks what they wrote: rows in events ... training_examples, a registered model.
#
#   deploy/image_smoke.sh [image]              # default localhost/r2led:<version of setup.py>
#
# Needs root and buildah; the image from `make image`. Environment (all optional):
#   R2LED_IMAGE_WORK    scratch folder; the workspace is <it>/smoke-workspace (default /var/tmp/r2led-image)
#   R2LED_SMOKE_ENV     the config env to run (default tiny)
#   R2LED_SUBMIT_OPTS   spark-submit options inside the image (default "--master local[2] --driver-memory 2g")
#
# `buildah run` with the default OCI runtime fails on hosts with hybrid cgroups ("cgroups in hybrid
# mode not supported"); chroot isolation needs no runtime. It does not apply the image's ENTRYPOINT,
# so the command names /app/deploy/submit.sh itself; the image's USER (10001), WORKDIR and ENV apply.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="$(sed -n 's/^ *version="\([^"]*\)".*/\1/p' "$HERE/setup.py")"
IMAGE="${1:-localhost/r2led:$VERSION}"
WORK="${R2LED_IMAGE_WORK:-/var/tmp/r2led-image}"
ENV_NAME="${R2LED_SMOKE_ENV:-tiny}"
SUBMIT_OPTS="${R2LED_SUBMIT_OPTS:---master local[2] --driver-memory 2g}"
WORKSPACE="$WORK/smoke-workspace"

[[ "$(id -u)" == 0 ]] || { echo "image_smoke.sh: buildah needs root here" >&2; exit 2; }
buildah inspect --type image "$IMAGE" >/dev/null 2>&1 \
  || { echo "image_smoke.sh: no image $IMAGE; run 'make image'" >&2; exit 2; }

rm -rf "$WORKSPACE"
mkdir -p "$WORKSPACE"
cp "$HERE/deploy/image_smoke_check.py" "$WORKSPACE/image_smoke_check.py"
chown -R 10001:10001 "$WORKSPACE"  # the image's user

container="$(buildah from --pull=never "$IMAGE")"
trap 'buildah rm "$container" >/dev/null 2>&1 || true' EXIT
in_image() {
  buildah run --isolation chroot --volume "$WORKSPACE:/app/workspace" \
    --env "R2LED_SUBMIT_OPTS=$SUBMIT_OPTS" "$@"
}

start=$SECONDS
# The tiny env reads a synthetic world's raw logs: write them first (Spark too, same image).
in_image "$container" -- /app/deploy/submit.sh generate --env "$ENV_NAME"
in_image "$container" -- /app/deploy/submit.sh pipeline --env "$ENV_NAME"
echo "image_smoke.sh: pipeline --env $ENV_NAME inside $IMAGE took $((SECONDS - start)) s"

in_image --env R2LED_MAIN=/app/workspace/image_smoke_check.py "$container" \
  -- /app/deploy/submit.sh check --env "$ENV_NAME"
echo "image_smoke.sh: passed in $((SECONDS - start)) s (workspace $WORKSPACE)"
