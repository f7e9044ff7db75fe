#!/usr/bin/env bash
# Build the book: set up, execute every chapter in the active profile, render HTML to _build/html.
#   DCPRIVACY_PROFILE=quick|standard|paper bash tools/book.sh   (default: standard with CUDA, else quick)
#   bash tools/book.sh --render-only                       render the committed notebooks, execute nothing
#   bash tools/book.sh --render-only --without-solutions   the students' edition, in _build/html-nosolutions
#   bash tools/book.sh --record       also record the chapter times as the committed record (results/timings/);
#                                     without it (or DCPRIVACY_RECORD_TIMINGS=1) they go to _build/timings/
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# Options of the course editions (other options pass through to the blocks below).
RENDER_ONLY=0 WITHOUT_SOLUTIONS=0 RECORD=() rest=()
for arg in "$@"; do
  case "$arg" in
    --render-only) RENDER_ONLY=1 ;;
    --without-solutions) WITHOUT_SOLUTIONS=1 ;;
    --record) RECORD=(--record) ;;
    *) rest+=("$arg") ;;
  esac
done
set -- ${rest[@]+"${rest[@]}"}
if [ "$WITHOUT_SOLUTIONS" = 1 ]; then
  # sphinx-exercise's hide_solutions drops every {solution} block; the committed notebooks are rendered
  # into a separate tree so that the instructors' edition in _build/html stays as it is.
  if [ "$RENDER_ONLY" != 1 ]; then
    echo "--without-solutions renders the committed notebooks: add --render-only" >&2; exit 2
  fi
  out=_build/nosolutions
  rm -rf "$out" _build/html-nosolutions
  mkdir -p "$out"
  # (the copy lives in another folder: local extensions' paths are made absolute, as they are read from it)
  "$PYTHON" -c "import os, sys, yaml; c = yaml.safe_load(open('_config.yml')); s = c.setdefault('sphinx', {}); \
s.setdefault('config', {})['hide_solutions'] = True; \
s['local_extensions'] = {k: os.path.abspath(v) for k, v in (s.get('local_extensions') or {}).items()}; \
yaml.safe_dump(c, open(sys.argv[1], 'w'), sort_keys=False, allow_unicode=True)" "$out/_config.yml"
  "$PYTHON" -c "from jupyter_book.cli.main import main; main()" build . --config "$out/_config.yml" \
    --path-output "$out" -W -n --keep-going
  mv "$out/_build/html" _build/html-nosolutions
  rm -rf "$out"
  test -f _build/html-nosolutions/index.html && echo "students' edition: _build/html-nosolutions/index.html"
  exit 0
fi
if [ "$RENDER_ONLY" = 1 ]; then
  "$PYTHON" -c "from jupyter_book.cli.main import main; main()" build . -W -n --keep-going
  test -f _build/html/index.html && echo "book: _build/html/index.html"
  exit 0
fi
bash tools/setup.sh
"$PYTHON" -m dcprivacy data
export DCPRIVACY_PROGRESS=${DCPRIVACY_PROGRESS:-0}  # pages show results, not progress bars
echo "profile: $("$PYTHON" -c 'from dcprivacy.config import profile_name; print(profile_name())')"
# every copy of [tool.dcprivacy] (install cells, _config.yml, README); notebooks/ once the chapters have run
"$PYTHON" tools/notebooks.py --sources
total_start=$(date +%s)
timings=$(mktemp)  # "stem seconds" per chapter: written once every chapter ran (see dcprivacy/timings.py)
for md in book/[0-9][0-9]-*.md book/appendix-*.md; do  # the chapters, then the appendices
  nb="${md%.md}.ipynb"
  "$PYTHON" -m jupytext --sync "$md" >/dev/null        # the .md is the source; refresh its notebook
  start=$(date +%s)
  "$PYTHON" -m jupyter execute --inplace --timeout=3600 "$nb" 2>&1 | grep -v "without encryption" || { echo "failed: $nb"; exit 1; }
  echo "executed $nb in $(( $(date +%s) - start )) s"
  echo "$(basename "${md%.md}") $(( $(date +%s) - start ))" >> "$timings"
done
echo "all chapters executed in $(( $(date +%s) - total_start )) s"
"$PYTHON" tools/notebooks.py >/dev/null  # notebooks/ from the executed chapters (their glued values)
# _build/timings/book-<profile>-<device>.json, or with --record the committed results/timings/ one; then the
# times beside the cost model's predictions (a report, not a check)
"$PYTHON" -m dcprivacy.timings "$timings" ${RECORD[@]+"${RECORD[@]}"} && rm -f "$timings"
"$PYTHON" -c "from jupyter_book.cli.main import main; main()" build . -W -n --keep-going
test -f _build/html/index.html && echo "book: _build/html/index.html"
