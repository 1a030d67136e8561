#!/usr/bin/env bash
# The whole suite, as .ci/run and the README run it: system packages, lint,
# types, the runtime bundle, unit + service tests, then the lab end to end —
# and finally a check that nothing was left behind (daemons, guests, loop
# devices, bridges, mounts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prereqs.sh
before=$(mktemp)
trap 'rm -f "$before"' EXIT
bash scripts/leftovers.sh snapshot "$before"
npx biome check .
npm run typecheck
npm run build
npx vitest run --project deployer --project runtime
npx vitest run --project lab
bash scripts/leftovers.sh check "$before"
