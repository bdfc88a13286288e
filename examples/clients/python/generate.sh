#!/bin/sh
# Generates the attackmesh.v1 Python modules (messages, gRPC stubs, type stubs) from proto/ into
# DIR (default: gen) with grpcio-tools, whose protoc and gRPC plugin match the grpcio runtime.
# Needs: python -m pip install grpcio-tools
set -eu
out=${1:-gen}
proto="$(cd "$(dirname "$0")/../../../proto" && pwd)"
mkdir -p "$out"
python -m grpc_tools.protoc -I "$proto" --python_out="$out" --grpc_python_out="$out" --pyi_out="$out" \
  "$proto"/attackmesh/v1/*.proto
