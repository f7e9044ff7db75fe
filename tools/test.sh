#!/usr/bin/env bash
# Run the whole test suite: unit tests, notebook pairing, every chapter re-executed by nbval in the
# quick profile, and the rendered book checked in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
bash tools/setup.sh
export DCPRIVACY_PROFILE=${DCPRIVACY_PROFILE:-quick} DCPRIVACY_PROGRESS=0
exec "$PYTHON" -m pytest tests book --nbval-lax --nbval-current-env --durations=15 "$@"
