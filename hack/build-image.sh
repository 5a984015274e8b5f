#!/usr/bin/env bash
# Build the controller image from the project's Dockerfile with podman, on a machine without Docker or
# a reachable base-image registry (../shared/tools/README.md). tests/image runs this once per session.
#
# Usage: hack/build-image.sh [--rebuild-base]
#   IMPRIMATUR_IMAGE  the tag to build (default localhost/imprimatur:dev)
#
# 1. podman's settings for these machines, written to .cache/image/containers.conf (export
#    CONTAINERS_CONF=$PWD/.cache/image/containers.conf to run podman by hand): runc and cgroupfs, since
#    crun fails here (`setrlimit RLIMIT_NOFILE: Operation not permitted`, then `cgroups in hybrid mode
#    not supported`), and no default ulimits.
# 2. The base: a stand-in for python:3.11-slim (Debian bookworm's Python 3.11, made by mmdebstrap and
#    imported as localhost/python:3.11-slim-local). Built once: the image carries a label with the hash
#    of its recipe, and is rebuilt only when the recipe changes or with --rebuild-base.
# 3. The Dockerfile, unchanged apart from the PYTHON_IMAGE build argument. pip reaches the package
#    index only with --network host and the machine's CA bundle mounted. podman's layer cache makes a
#    rebuild with the same requirements.lock cost only the project's own layers. The build stage is
#    tagged localhost/imprimatur-build-stage:cache, so that `podman image prune` keeps that cache, and
#    the step images a new build no longer uses are removed.
#
# The last line on stdout is `image=<name> id=<image id> size=<bytes>`. The build log is kept in
# .cache/image/build.log. Runs one at a time (flock on .cache/image/lock).
set -euo pipefail
cd "$(dirname "$0")/.."

image="${IMPRIMATUR_IMAGE:-localhost/imprimatur:dev}"
base="localhost/python:3.11-slim-local"
rebuild_base=false
for arg in "$@"; do
  case "$arg" in
    --rebuild-base) rebuild_base=true ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
for tool in podman runc mmdebstrap flock; do
  command -v "$tool" >/dev/null || { echo "$tool not found: run ./scripts/setup" >&2; exit 1; }
done

cache=.cache/image
mkdir -p "$cache"
exec 9>"$cache/lock"
flock 9

conf="$cache/containers.conf"
cat > "$conf.tmp" <<'EOF'
# Written by hack/build-image.sh: podman on these machines (../shared/tools/README.md).
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
mv "$conf.tmp" "$conf"
export CONTAINERS_CONF="$PWD/$conf"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- 2. the base stand-in
suite=bookworm
packages=python3,python3-venv,python-is-python3,ca-certificates,passwd
# As Debian's slim images: no manual pages, info or translations; documentation only its copyright files.
dpkg_options=(
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
)
# What python:3.11-slim's config says that an imported tarball lacks.
changes=(
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  --change 'ENV LANG=C.UTF-8'
  --change 'CMD ["python3"]'
)
key=$(printf '%s\n' 1 "$suite" "$packages" "${dpkg_options[@]}" "${changes[@]}" | sha256sum | cut -c1-16)
have=$(podman image inspect --format '{{index .Labels "imprimatur.dev/base-recipe"}}' "$base" 2>/dev/null || true)
old_base=""
if $rebuild_base || [ "$have" != "$key" ]; then
  started=$(now)
  old_base=$(podman image inspect --format '{{.Id}}' "$base" 2>/dev/null || true)
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mmdebstrap --quiet --variant=apt --include="$packages" "${dpkg_options[@]}" "$suite" "$work/base.tar"
  podman import --quiet "${changes[@]}" --change "LABEL imprimatur.dev/base-recipe=$key" \
    "$work/base.tar" "$base" >/dev/null
  rm -rf "$work"
  echo "base: built $base in $(since "$started") s (recipe $key)"
else
  echo "base: $base cached (recipe $key)"
fi

# --- 3. the project's Dockerfile
started=$(now)
# Every image a build step made (its log's `--> <id>` lines): listed in $made, so that the steps that a
# later build no longer uses are removed, and podman's store does not grow by a venv at each change.
made="$cache/images.list"
step_ids() { grep -oE '^--> [0-9a-f]{11,64}$' "$cache/build.log" | cut -c5- || true; }
if ! podman build --network host --pull=never \
    --build-arg "PYTHON_IMAGE=$base" \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    -f Dockerfile -t "$image" . > "$cache/build.log" 2>&1; then
  step_ids >> "$made"
  echo "podman build failed; the end of $cache/build.log:" >&2
  tail -n 40 "$cache/build.log" >&2
  exit 1
fi
step_ids > "$cache/images.now"
stale=0 removed=0
if [ -f "$made" ]; then
  # Newest first: `podman rmi` of a chain's last image also removes its parents that nothing else uses.
  while read -r id; do
    grep -qx "$id" "$cache/images.now" && continue
    stale=$((stale + 1))
    if podman image exists "$id"; then
      podman rmi "$id" >/dev/null 2>&1 || true  # still the parent of a step image in use: kept
    fi
    podman image exists "$id" || removed=$((removed + 1))
  done < <(tac "$made")
fi
mv "$cache/images.now" "$made"
# The build stage's last image is named, so that `podman image prune` keeps the pip layer's cache.
build_stage=$(awk '
  /^\[[0-9]+\/[0-9]+\] STEP 1\// { split($1, n, "/"); if (substr(n[1], 2) + 0 == n[2] + 0) exit }
  /^--> [0-9a-f]+$/ { id = $2 }
  END { print id }' "$cache/build.log")
[ -z "$build_stage" ] || podman tag "$build_stage" localhost/imprimatur-build-stage:cache
if [ -n "$old_base" ]; then
  podman rmi "$old_base" >/dev/null 2>&1 || true  # the replaced base, once no step image uses it
fi
cached=$(grep -c '^--> Using cache' "$cache/build.log" || true)
steps=$(grep -c '^\[[0-9]*/[0-9]*\] STEP' "$cache/build.log" || true)
echo "image: built $image in $(since "$started") s ($cached of $steps steps from the layer cache; $removed of $stale stale step images removed)"
podman image inspect --format 'image={{index .RepoTags 0}} id={{.Id}} size={{.Size}}' "$image"
