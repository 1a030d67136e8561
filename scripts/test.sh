#!/usr/bin/env bash
# The whole suite, as .ci/run and the README run it: system packages, lint,
# types, the runtime bundle, unit + service tests, then the lab end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prereqs.sh
npx biome check .
npm run typecheck
npm run build
npx vitest run --project deployer --project runtime
npx vitest run --project lab
