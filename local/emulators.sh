#!/usr/bin/env bash
# Build the Go emulators the integration tests and the local stack use (cached in .cache/bin/):
#
#   local/emulators.sh build     build whatever is missing (skips binaries already there)
#   local/emulators.sh rebuild   rebuild both from scratch
#   local/emulators.sh status    list the binaries and whether they are built
#
# - Cloud Tasks emulator  github.com/aertje/cloud-tasks-emulator@v1.2.0           -> .cache/bin/cloud-tasks-emulator
# - BigQuery emulator     github.com/goccy/bigquery-emulator@v0.8.1 (cmd/...)     -> .cache/bin/bigquery-emulator
#
# Why not `go install pkg@version`: that asks the module proxy for the module's `@v/list`
# (deprecation check), which the proxy here answers with 403. A throwaway module that requires
# the exact version (plus a tools.go importing the command) builds the same binary with
# `GOFLAGS=-mod=mod go build`. The throwaway modules live in .cache/gobuild/ (git-ignored).
# CGO is off: static binaries, no C toolchain needed. The BigQuery emulator's first build
# takes several minutes (many dependencies); later builds come from Go's caches.
#
# Start them from Python with local/emulators.py (CloudTasksEmulator, BigQueryEmulator).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.cache/bin"
WORK="$ROOT/.cache/gobuild"

# name | module | version | package | go directive of the throwaway module
EMULATORS=(
    "cloud-tasks-emulator|github.com/aertje/cloud-tasks-emulator|v1.2.0|github.com/aertje/cloud-tasks-emulator|1.22"
    "bigquery-emulator|github.com/goccy/bigquery-emulator|v0.8.1|github.com/goccy/bigquery-emulator/cmd/bigquery-emulator|1.25"
)

say() { echo "emulators: $*"; }
die() { echo "emulators: error: $*" >&2; exit 1; }

build_one() {
    local name="$1" module="$2" version="$3" pkg="$4" godir="$5"
    local target="$BIN/$name" dir="$WORK/$name"
    if [[ -x "$target" ]]; then
        say "$name: already built ($target)"
        return 0
    fi
    command -v go >/dev/null 2>&1 || die "Go is required to build $name (https://go.dev/dl/; Debian: apt-get install golang)"
    mkdir -p "$dir" "$BIN"
    cat >"$dir/go.mod" <<EOF
module stellarmap.local/build/$name

go $godir

require $module $version
EOF
    cat >"$dir/tools.go" <<EOF
//go:build tools

// Package tools pins the emulator command so that the module graph keeps it.
package tools

import _ "$pkg"
EOF
    say "$name: building $pkg@$version (CGO_ENABLED=0; log in $dir/build.log)"
    local start=$SECONDS
    if ! (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -o "$target.tmp" "$pkg") >"$dir/build.log" 2>&1; then
        rm -f "$target.tmp"
        tail -n 20 "$dir/build.log" >&2
        die "$name: go build failed (see $dir/build.log)"
    fi
    mv -f "$target.tmp" "$target"
    say "$name: built in $((SECONDS - start)) s -> $target"
}

build() {
    local entry
    for entry in "${EMULATORS[@]}"; do
        IFS='|' read -r name module version pkg godir <<<"$entry"
        build_one "$name" "$module" "$version" "$pkg" "$godir"
    done
}

status() {
    local entry missing=0
    for entry in "${EMULATORS[@]}"; do
        IFS='|' read -r name module version _ _ <<<"$entry"
        if [[ -x "$BIN/$name" ]]; then
            say "$name ($module@$version): built ($BIN/$name)"
        else
            say "$name ($module@$version): missing (run local/emulators.sh build)"
            missing=1
        fi
    done
    return "$missing"
}

case "${1:-}" in
    build) build ;;
    rebuild)
        for entry in "${EMULATORS[@]}"; do rm -f "$BIN/${entry%%|*}"; done
        build
        ;;
    status) status ;;
    *) echo "usage: $0 build|rebuild|status" >&2; exit 2 ;;
esac
