#!/usr/bin/env bash
# Build the book: set up, execute every chapter in the active profile, render HTML to _build/html.
#   DCPRIVACY_PROFILE=quick|standard|paper bash tools/book.sh   (default: standard with CUDA, else quick)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
bash tools/setup.sh
"$PYTHON" -m dcprivacy data
export DCPRIVACY_PROGRESS=${DCPRIVACY_PROGRESS:-0}  # pages show results, not progress bars
echo "profile: $("$PYTHON" -c 'from dcprivacy.config import profile_name; print(profile_name())')"
# every copy of [tool.dcprivacy] (install cells, _config.yml, README) and notebooks/ from the chapters
"$PYTHON" tools/notebooks.py
total_start=$(date +%s)
timings=$(mktemp)  # "stem seconds" per chapter: recorded under results/timings/ once every chapter ran
for md in book/[0-9][0-9]-*.md; do
  nb="${md%.md}.ipynb"
  "$PYTHON" -m jupytext --sync "$md" >/dev/null        # the .md is the source; refresh its notebook
  start=$(date +%s)
  "$PYTHON" -m jupyter execute --inplace --timeout=3600 "$nb" 2>&1 | grep -v "without encryption" || { echo "failed: $nb"; exit 1; }
  echo "executed $nb in $(( $(date +%s) - start )) s"
  echo "$(basename "${md%.md}") $(( $(date +%s) - start ))" >> "$timings"
done
echo "all chapters executed in $(( $(date +%s) - total_start )) s"
"$PYTHON" -m dcprivacy.timings "$timings" && rm -f "$timings"  # results/timings/book-<profile>-<device>.json
"$PYTHON" -c "from jupyter_book.cli.main import main; main()" build . -W -n --keep-going
test -f _build/html/index.html && echo "book: _build/html/index.html"
