import json
import subprocess
import sys

import pytest

from dcprivacy import config, provenance


def test_profile_selection(monkeypatch):
    monkeypatch.setenv("DCPRIVACY_PROFILE", "paper")
    assert config.get_profile().name == "paper"
    monkeypatch.setenv("DCPRIVACY_PROFILE", "Quick")
    assert config.profile_name() == "quick"
    monkeypatch.delenv("DCPRIVACY_PROFILE")
    import torch
    assert config.profile_name() == ("standard" if torch.cuda.is_available() else "quick")
    monkeypatch.setenv("DCPRIVACY_PROFILE", "huge")
    with pytest.raises(ValueError, match="allowed values are quick, standard, paper"):
        config.get_profile()


def test_profiles_grow():
    q, s, p = (config.PROFILES[n] for n in config.PROFILE_NAMES)
    assert q.tour.width <= s.tour.width <= p.tour.width
    assert q.mia.runs <= s.mia.runs <= p.mia.runs and p.mia.runs == 64
    assert p.condense.dm_iterations == 20000 and p.condense.dc_iterations == 1000


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "dcprivacy", *args], capture_output=True, text=True, timeout=300)


def test_cli_help_lists_subcommands():
    out = run_cli("--help")
    assert out.returncode == 0
    for cmd in ("data", "profile", "bench"):
        assert cmd in out.stdout


def test_cli_data_reports_fashionmnist():
    out = run_cli("data")
    assert out.returncode == 0 and "fashionmnist  found" in out.stdout


def test_cli_profile_json():
    out = run_cli("profile", "--name", "paper")
    assert json.loads(out.stdout)["name"] == "paper"


def test_cli_rejects_bad_arguments():
    out = run_cli("bench", "everything")
    assert out.returncode != 0 and "invalid choice" in out.stderr


def test_bench_train_writes_json_with_provenance(tmp_path):
    out = run_cli("bench", "train", "--models", "2", "--epochs", "1", "--width", "4", "--out", str(tmp_path / "b.json"))
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["speedup"] > 0 and result["max_param_difference"] < 1e-4
    prov = result["provenance"]
    for key in ("commit", "device", "versions", "config", "seed", "wall_time_s", "finished_utc"):
        assert key in prov
    assert prov["versions"]["torch"]
    assert prov["command"][:3] == ["python", "-m", "dcprivacy"]  # no path of the machine it ran on


def test_command_line_drops_machine_paths():
    assert provenance.command_line(["/any/where/dcprivacy/__main__.py", "bench", "train"]) == \
        ["python", "-m", "dcprivacy", "bench", "train"]
    assert provenance.command_line(["/usr/lib/python3/site-packages/pytest", "-q"]) == ["pytest", "-q"]


def test_provenance_block(tmp_path):
    path = provenance.write_json(tmp_path / "r" / "x.json", {"a": 1}, config={"k": (1, 2)}, seed=3, started=0.0)
    got = json.loads(path.read_text())
    assert got["a"] == 1 and got["provenance"]["seed"] == 3 and got["provenance"]["config"] == {"k": [1, 2]}
