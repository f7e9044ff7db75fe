"""The GPU reproduction script, rehearsed on the CPU at toy sizes (--dry-run)."""
import json

import pytest

from dcprivacy.cli import main


@pytest.mark.slow
def test_dry_run_writes_every_step(tmp_path, monkeypatch):
    from dcprivacy import runner

    def fake_run_chapter(stem, *, profile, device_name, timeout):  # tests/test_runner.py runs a real chapter
        from dcprivacy.cost import chapter_minutes
        predicted = chapter_minutes(stem, profile, device_name)
        return {"chapter": stem, "returncode": 0, "seconds": 90 * predicted, "predicted_minutes_on_device": predicted,
                "measured_over_predicted": 1.5}

    monkeypatch.setattr(runner, "run_chapter", fake_run_chapter)
    # steps 0-3 (FashionMNIST); step 4 (CIFAR-10, only where its data is on disk) is tested below on an archive
    rc = main(["reproduce", "--budget-minutes", "30", "--device", "cpu", "--dry-run", "--steps", "0,1,2,3",
               "--results", str(tmp_path)])
    record = json.loads((tmp_path / "gpu" / "run-dry.json").read_text())
    assert rc == 0, record
    assert [record["steps"][s]["status"] for s in "0123"] == ["done"] * 4
    recal = json.loads((tmp_path / "gpu" / "chapters" / "recalibration-cpu.json").read_text())
    assert recal["factor"] == pytest.approx(1.5) and "t4_minutes_recalibrated" in recal
    assert (tmp_path / "gpu" / "chapters" / "03-linear-bound-quick-cpu.json").exists()
    for name in ("dm-fashionmnist-ipc1", "dm-fashionmnist-ipc2", "dsa-fashionmnist-ipc1", "dc-fashionmnist-ipc1"):
        r = json.loads((tmp_path / "condensation" / f"{name}.json").read_text())
        assert r["iterations"] >= 1 and 0 <= r["evaluation"]["accuracy_mean"] <= 1 and "provenance" in r
    for p in ("dm", "real", "subset"):
        r = json.loads((tmp_path / "gpu" / "critique" / f"{p}.json").read_text())
        assert r["runs"] == 4 and "lira-online-fixed" in r["attacks"]
    assert "init_members" in json.loads((tmp_path / "gpu" / "critique" / "dm.json").read_text())["attacks"]["lira-offline"]


def test_a_budget_too_small_skips_with_reasons(tmp_path):
    rc = main(["reproduce", "--budget-minutes", "0.0001", "--device", "cpu", "--dry-run", "--steps", "1",
               "--results", str(tmp_path)])
    record = json.loads((tmp_path / "gpu" / "run-dry.json").read_text())
    assert rc == 0 and record["steps"]["1"]["skipped"] and not record["steps"]["1"]["done"]


def test_bad_arguments_fail_before_work(tmp_path, capsys):
    for steps, message in (("a", "--steps 'a'"), ("7", "allowed values are 0, 1, 2, 3")):
        rc = main(["reproduce", "--budget-minutes", "1", "--steps", steps, "--device", "cpu", "--results", str(tmp_path)])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "gpu").exists()  # nothing ran


def test_cifar_step_runs_where_the_data_is(tmp_path, monkeypatch, capsys):
    """Step 4 on a small archive in CIFAR-10's format (dry run): DM, DSA and DC condensed, evaluated and recorded
    where chapter 2's table finds them."""
    from cifar_archive import write_archive
    from dcprivacy.reproduce import published_comparison
    write_archive(tmp_path / "data", per_class=20, test_per_class=4)
    monkeypatch.setenv("DCPRIVACY_DATA", str(tmp_path / "data"))
    rc = main(["reproduce", "--budget-minutes", "30", "--device", "cpu", "--dry-run", "--steps", "4",
               "--results", str(tmp_path / "results")])
    record = json.loads((tmp_path / "results" / "gpu" / "run-dry.json").read_text())
    assert rc == 0 and record["steps"]["4"]["status"] == "done", record
    assert set(record["steps"]["4"]["done"]) == {"dm-cifar10-ipc1", "dm-cifar10-ipc2", "dsa-cifar10-ipc1",
                                                 "dc-cifar10-ipc1"}
    r = json.loads((tmp_path / "results" / "condensation" / "dm-cifar10-ipc1.json").read_text())
    assert r["dataset"] == "cifar10" and r["published_accuracy"] == 26.0 and len(r["normalisation"]["mean"]) == 3
    rows = {(x["method"], x["dataset"], x["ipc"]): x for x in published_comparison(tmp_path / "results")}
    assert rows["dm", "cifar10", 1]["measured"]["file"] == "dm-cifar10-ipc1.json"
    assert rows["dm", "cifar10", 10]["measured"] is None and "--dataset cifar10" in rows["dm", "cifar10", 10]["command"]


def test_cifar_step_without_the_data_is_skipped_with_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DCPRIVACY_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rc = main(["reproduce", "--budget-minutes", "1", "--device", "cpu", "--dry-run", "--steps", "4",
               "--results", str(tmp_path / "results")])
    record = json.loads((tmp_path / "results" / "gpu" / "run-dry.json").read_text())
    assert rc == 0 and record["steps"]["4"]["status"] == "skipped"
    line = next(ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("step 4"))
    assert line.startswith("step 4: skipped: CIFAR-10 is not on this machine: cifar10 was not found")
    assert "python -m dcprivacy data --download" in line
    assert not (tmp_path / "results" / "condensation").exists()
