#!/usr/bin/env bash
# Regenerates sparkplug_b.pb.go from sparkplug_b.proto with protoc (Debian's
# protobuf-compiler) and protoc-gen-go at the google.golang.org/protobuf
# version go.mod pins. TestGeneratedCodeCurrent runs this into a temporary
# directory and fails when the checked-in file differs.
#   usage: ./generate.sh [output-dir]
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-.}
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOBIN=$bin go install google.golang.org/protobuf/cmd/protoc-gen-go
protoc --plugin=protoc-gen-go="$bin/protoc-gen-go" --go_out="$out" --go_opt=paths=source_relative sparkplug_b.proto
