#!/usr/bin/env bash
# Conformance: the official Python clients (simple-salesforce, hubspot-api-client) against
# `refbridge sandbox`, unchanged. Installs them in a throwaway virtual environment, starts the
# sandboxes with a fresh RSA key for Salesforce's JWT bearer flow, runs conformance.py, then checks
# that the same seed gives byte-identical exports and data.
#
# Usage: tests/conformance/run.sh [path/to/refbridge]   (default: target/debug/refbridge, built here)
set -euo pipefail
cd "$(dirname "$0")/../.."
binary=${1:-target/debug/refbridge}
[ -x "$binary" ] || cargo build --locked --bin refbridge
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== python clients in a throwaway venv"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check \
    "simple-salesforce>=1.12,<2" "hubspot-api-client>=12,<13" "cryptography>=42" "pyjwt>=2.8"
"$work/venv/bin/python" -c 'import simple_salesforce, hubspot; print("simple-salesforce", simple_salesforce.__version__ if hasattr(simple_salesforce, "__version__") else "?", "hubspot-api-client", hubspot.__version__ if hasattr(hubspot, "__version__") else "?")'

echo "== RSA key for the Salesforce JWT bearer flow"
"$work/venv/bin/python" - "$work" <<'PY'
import sys, pathlib
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives import serialization
work = pathlib.Path(sys.argv[1])
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
(work / "jwt_private.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
(work / "jwt_public.pem").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
PY

start_sandbox() { # $1 = name, rest = extra args; prints the ready line into $work/$1.json
    local name=$1; shift
    "$binary" sandbox --seed 7 --as-of 2026-11-01 --salesforce-jwt-public-key "$work/jwt_public.pem" "$@" \
        > "$work/$name.out" 2> "$work/$name.log" &
    pids+=($!)
    for _ in $(seq 1 300); do
        if [ -s "$work/$name.out" ]; then head -n 1 "$work/$name.out" > "$work/$name.json"; return 0; fi
        if ! kill -0 "${pids[-1]}" 2>/dev/null; then cat "$work/$name.log"; echo "sandbox $name exited"; return 1; fi
        sleep 0.1
    done
    cat "$work/$name.log"; echo "sandbox $name did not become ready"; return 1
}

echo "== sandbox (seed 7) with --write-config and --export-dir"
start_sandbox first --write-config "$work/rb.toml" --export-dir "$work/exports-first"
cat "$work/first.json"
"$binary" check-config --config "$work/rb.toml"

echo "== official clients"
"$work/venv/bin/python" tests/conformance/conformance.py "$work/first.json" "$work/jwt_private.pem"

echo "== the same seed gives byte-identical exports and data"
# Two fresh sandboxes (the first one's data and tokens were changed by the checks above).
start_sandbox second --export-dir "$work/exports-second"
start_sandbox third
diff -r "$work/exports-first" "$work/exports-second"
echo "ok exports are byte-identical"
"$work/venv/bin/python" tests/conformance/same_data.py "$work/second.json" "$work/third.json"

echo "== the config written by the sandbox imports the exports"
cp "$work/exports-first/"* "$(sed -n 's/^inbox = "\(.*\)"$/\1/p' "$work/rb.toml")/"
"$binary" import --config "$work/rb.toml" --json
echo "conformance: ok"
