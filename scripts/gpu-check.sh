#!/usr/bin/env bash
# The GPU check (scripts/gpu-check.ts): the adapter, its features and limits; the kernel tests against it
# (REQUIRE_WEBGPU=1); the kernels and model benches at GPU sizes. Everything is written under OUTDIR.
#
#   bash scripts/gpu-check.sh OUTDIR [--quick] [--no-tests] [--no-bench]
#       With Node and node_modules here: builds the check into OUTDIR/build and runs it. Without Node: runs
#       the bundle .gpu-bundle/ (made by --bundle on a machine with Node) with the same arguments.
#   bash scripts/gpu-check.sh --bundle [DIR]
#       Builds DIR (default .gpu-bundle) with ../shared/tools/gpu-bundle.sh: node, dawn.node, the Vulkan
#       loader and the check, for a Linux machine with a GPU driver and no Node (bench/README.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
usage='usage: bash scripts/gpu-check.sh OUTDIR [--quick] [--no-tests] [--no-bench] | --bundle [DIR]'

# esbuild: the check and the test files in one ESM file; 'vitest' is the shim, webgpu (a native addon) stays
# outside. $1: the output file; $2: 'banner' to define require for the bundled CommonJS packages.
build() {
  local banner=()
  [ "${2:-}" = banner ] && banner=(--banner:js="import { createRequire as __cr } from 'module'; const require = __cr(import.meta.url);")
  (cd "$root" && npx --no-install esbuild scripts/gpu-check.ts --bundle --platform=node --format=esm \
    --target=node20 --external:webgpu --alias:vitest=./scripts/gpu-check/vitest-shim.ts \
    --inject:./scripts/gpu-check/esm-globals.ts --outfile="$1" \
    --log-level=warning "${banner[@]}")
}

case "${1:-}" in
  '' | -h | --help) echo "$usage" >&2; exit 2 ;;
  --bundle)
    dir=${2:-.gpu-bundle}
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    build "$tmp/gpu-check.mjs"
    bash "$root/../shared/tools/gpu-bundle.sh" "$tmp/gpu-check.mjs" "$dir"
    echo "gpu-check: bundle in $dir; on the GPU machine: bash $dir/run.sh OUTDIR (or bash scripts/gpu-check.sh OUTDIR)" >&2
    exit 0 ;;
  -*) echo "gpu-check: the first argument is OUTDIR, not '$1'; $usage" >&2; exit 2 ;;
esac

out=$1
shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
if command -v node >/dev/null && [ -d "$root/node_modules/webgpu" ]; then
  mkdir -p "$out/build"
  # The build imports webgpu from the project's node_modules, reached through a link inside OUTDIR.
  ln -sfn "$root/node_modules" "$out/build/node_modules"
  build "$out/build/gpu-check.mjs" banner
  cd "$root"
  exec node "$out/build/gpu-check.mjs" "$out" "$@"
elif [ -x "$root/.gpu-bundle/run.sh" ]; then
  cd "$root"
  exec bash "$root/.gpu-bundle/run.sh" "$out" "$@"
else
  echo "gpu-check: neither Node with node_modules (npm ci) nor a bundle .gpu-bundle/ (bash scripts/gpu-check.sh --bundle, on a machine with Node)" >&2
  exit 1
fi
