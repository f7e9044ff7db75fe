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
    rc = main(["reproduce", "--budget-minutes", "30", "--device", "cpu", "--dry-run", "--results", str(tmp_path)])
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
