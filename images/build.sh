#!/usr/bin/env bash
# Build the project's images, tagged with the package version; optionally push them.
#
#   images/build.sh                      # all: diffucoder-{base,train,serve}:<version>
#   images/build.sh --push serve         # build and push one
#   images/build.sh --dry-run            # print the commands only
#
# Registry: $DIFFUCODER_IMAGE_REGISTRY, default the project's (diffucoder.kube.config.image_ref names
# every image: the components, the cluster jobs and this script). $DOCKER picks the client.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$( [[ -x "$ROOT/.venv/bin/python" ]] && echo "$ROOT/.venv/bin/python" || echo python3 )}"
DOCKER="${DOCKER:-docker}"
export DOCKER_BUILDKIT=1  # reads images/<name>/Dockerfile.dockerignore
ALL_IMAGES=(base train serve)

push=0 dry_run=0 images=()
for arg in "$@"; do
  case "$arg" in
    --push) push=1 ;;
    --dry-run) dry_run=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    base|train|serve) images+=("$arg") ;;
    *) echo "build.sh: unknown argument '$arg' (images: ${ALL_IMAGES[*]})" >&2; exit 2 ;;
  esac
done
[[ ${#images[@]} -gt 0 ]] || images=("${ALL_IMAGES[@]}")

# Version and image names come from the project itself, never typed here.
VERSION="$(cd "$ROOT" && PYTHONPATH=src "$PYTHON" -c 'import diffucoder; print(diffucoder.__version__)')"
image_ref() { (cd "$ROOT" && PYTHONPATH=src "$PYTHON" -c 'import sys; from diffucoder.kube.config import image_ref; print(image_ref(sys.argv[1]))' "$1"); }

run() {
  printf '%q ' "$@"; echo
  if [[ $dry_run -eq 0 ]]; then "$@"; fi
}

for name in "${images[@]}"; do
  ref="$(image_ref "$name")"
  run "$DOCKER" build --file "$ROOT/images/$name/Dockerfile" --tag "$ref" \
    --label "org.opencontainers.image.version=$VERSION" \
    --label "org.opencontainers.image.title=diffucoder-$name" "$ROOT"
  if [[ $push -eq 1 ]]; then
    run "$DOCKER" push "$ref"
  fi
done
