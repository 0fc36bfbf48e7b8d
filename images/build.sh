#!/usr/bin/env bash
# Build the project's images; optionally push them.
#
#   images/build.sh                      # all: diffucoder-{base,train,serve}:<version>, diffucoder-minio:<release>
#   images/build.sh --push serve         # build and push one
#   images/build.sh --dry-run            # print the commands only
#
# Registry: $DIFFUCODER_IMAGE_REGISTRY, default the project's (diffucoder.kube.config.image_ref names
# every project image: the components, the cluster jobs and this script). The MinIO image is MinIO
# built from source, tagged with its release (the ARG MINIO_SOURCE_TAG of images/minio/Dockerfile,
# the chart's minio.image.tag). $DOCKER picks the client.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$( [[ -x "$ROOT/.venv/bin/python" ]] && echo "$ROOT/.venv/bin/python" || echo python3 )}"
DOCKER="${DOCKER:-docker}"
export DOCKER_BUILDKIT=1  # reads images/<name>/Dockerfile.dockerignore
ALL_IMAGES=(base train serve minio)

push=0 dry_run=0 images=()
for arg in "$@"; do
  case "$arg" in
    --push) push=1 ;;
    --dry-run) dry_run=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    base|train|serve|minio) images+=("$arg") ;;
    *) echo "build.sh: unknown argument '$arg' (images: ${ALL_IMAGES[*]})" >&2; exit 2 ;;
  esac
done
[[ ${#images[@]} -gt 0 ]] || images=("${ALL_IMAGES[@]}")

# Version and image names come from the project itself, never typed here.
VERSION="$(cd "$ROOT" && PYTHONPATH=src "$PYTHON" -c 'import diffucoder; print(diffucoder.__version__)')"
image_ref() { (cd "$ROOT" && PYTHONPATH=src "$PYTHON" -c 'import sys; from diffucoder.kube.config import image_ref; print(image_ref(sys.argv[1]))' "$1"); }
MINIO_RELEASE="$(sed -n 's/^ARG MINIO_SOURCE_TAG=//p' "$ROOT/images/minio/Dockerfile" | head -n 1)"
[[ -n "$MINIO_RELEASE" ]] || { echo "build.sh: images/minio/Dockerfile has no ARG MINIO_SOURCE_TAG" >&2; exit 1; }

run() {
  printf '%q ' "$@"; echo
  if [[ $dry_run -eq 0 ]]; then "$@"; fi
}

for name in "${images[@]}"; do
  ref="$(image_ref "$name")" version="$VERSION"
  if [[ "$name" == minio ]]; then   # the same registry, MinIO's release as the tag
    ref="${ref%:*}:$MINIO_RELEASE" version="$MINIO_RELEASE"
  fi
  run "$DOCKER" build --file "$ROOT/images/$name/Dockerfile" --tag "$ref" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.title=diffucoder-$name" "$ROOT"
  if [[ $push -eq 1 ]]; then
    run "$DOCKER" push "$ref"
  fi
done
