#!/usr/bin/env bash
# Build the Jaeger v2 binary (cmd/jaeger) from the Go module proxy into ops/jaeger/bin.
# A no-op when the binary of this version is already there.
set -euo pipefail
VERSION="${JAEGER_MODULE_VERSION:-v1.76.0}"   # the module version that ships Jaeger v2
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/bin/jaeger"
stamp="$here/bin/.version"
if [[ -x "$out" && -f "$stamp" && "$(cat "$stamp")" == "$VERSION" ]]; then
  echo "jaeger $VERSION already built: $out"; exit 0
fi
command -v go >/dev/null || { echo "go is needed to build Jaeger"; exit 1; }
src="$(go mod download -json "github.com/jaegertracing/jaeger@$VERSION" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
work="$(mktemp -d)"
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
cp -r "$src/." "$work/"
chmod -R u+w "$work"
mkdir -p "$here/bin"
(cd "$work" && GOFLAGS=-mod=mod go build -trimpath -o "$out" ./cmd/jaeger)
echo "$VERSION" > "$stamp"
echo "built $out"
