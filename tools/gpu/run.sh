#!/usr/bin/env bash
# The GPU reproduction in one command, on a machine with a CUDA GPU, PyTorch and torchvision but possibly
# no internet, Jupyter or Opacus (see tools/gpu/README.md for what to carry there):
#   bash tools/gpu/run.sh BUDGET_MINUTES [more options of `python -m dcprivacy reproduce`]
# Results appear under results/ as each one finishes (JSON with provenance); results/gpu/run.json says
# what every step did, skipped or truncated, and how many minutes it took.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
BUDGET=${1:?"usage: bash tools/gpu/run.sh BUDGET_MINUTES [--dry-run] [--device cpu] [--steps 0,1,2,3,4]"}
shift
CARRY=${DCPRIVACY_CARRY:-.gpu-carry}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" DCPRIVACY_PROGRESS=${DCPRIVACY_PROGRESS:-0}
# wheels the machine lacks (Opacus for chapter 8's accounting), installed from the carried folder only
if ! "$PYTHON" -c "import opacus" 2>/dev/null && compgen -G "$CARRY/wheels/*.whl" >/dev/null; then
  "$PYTHON" -m pip install --quiet --no-index --find-links "$CARRY/wheels" opacus
fi
# FashionMNIST from the carried Debian .gz files, prepared once into torchvision's layout
if [ -z "${DCPRIVACY_DATA:-}" ] && compgen -G "$CARRY/fashion-mnist/*.gz" >/dev/null; then
  export DCPRIVACY_DATA="$PWD/$CARRY/data"
  "$PYTHON" -c "from dcprivacy.data import prepare_fashion_from_debian as p; p('$CARRY/fashion-mnist', '$DCPRIVACY_DATA')"
fi
"$PYTHON" -m dcprivacy data >&2
exec "$PYTHON" -m dcprivacy reproduce --budget-minutes "$BUDGET" "$@"
