"""The cost model: its predictions against the measured whole-book times, and the profiles' budgets."""
import json
import math

import pytest

from dcprivacy import cost
from dcprivacy.config import PROFILES, replace


def test_interface_and_every_chapter():
    r = cost.predict("quick", "cpu")
    assert {"profile", "device", "constants", "chapters"} <= set(r)
    assert set(r["chapters"]) == set(cost.CHAPTERS)
    from dcprivacy.runner import chapter_sources
    assert set(cost.CHAPTERS) == {p.stem for p in chapter_sources()}, "a chapter without a cost (or v.v.)"
    for stem, c in r["chapters"].items():
        assert {"flops", "steps", "minutes"} <= set(c)
        assert c["flops"] > 0 and c["steps"] > 0 and c["minutes"] > 0
        assert c["minutes"] == pytest.approx(cost.chapter_minutes(stem, "quick", "cpu"))
        assert c["minutes_in_book"] <= c["minutes"] + 1e-9
    with pytest.raises(ValueError, match="allowed values"):
        cost.predict("quick", "tpu")
    with pytest.raises(ValueError, match="allowed values"):
        cost.chapter_minutes("99-nope", "quick", "cpu")


def test_quick_cpu_prediction_within_1_5x_of_the_last_whole_book_run():
    measured = cost.measured_timings("quick", "cpu")
    r = cost.predict("quick", "cpu")
    for stem, seconds in measured.items():
        predicted = 60 * r["chapters"][stem]["minutes_in_book"]  # the book runs in order: caches are warm
        assert 1 / 1.5 <= predicted / seconds <= 1.5, (stem, predicted, seconds)


@pytest.mark.parametrize("profile,device", sorted(cost.BUDGET_MINUTES))
def test_profiles_fit_their_budgets(profile, device):
    budget = cost.BUDGET_MINUTES[profile, device]
    r = cost.predict(profile, device)
    for stem, c in r["chapters"].items():  # standing alone: 5 and 8 re-create chapter 4's experiment
        assert c["minutes"] <= budget[stem], (stem, c["minutes"], budget[stem])
    if (profile, device) in cost.BOOK_BUDGET_MINUTES:
        assert r["total_minutes_in_book"] <= cost.BOOK_BUDGET_MINUTES[profile, device]


def test_standalone_chapters_pay_for_what_they_recreate():
    for stem in ("05-no-free-lunch", "08-dp-condensation"):
        alone = cost.chapter_work(stem, "standard", "t4")
        in_book = cost.chapter_work(stem, "standard", "t4", in_book=True)
        ch4 = cost.mia_experiment(PROFILES["standard"].mia, gpu_paths=True)
        # chapter 8 also draws one image per class of chapter 5's frontier when chapter 5 has not cached it
        subset1 = cost.mia_pipeline("subset", replace(PROFILES["standard"].mia, ipc=1), gpu_paths=True).flops \
            if stem == "08-dp-condensation" else 0.0
        assert alone.flops == pytest.approx(in_book.flops + ch4.flops + subset1)


def test_terms_follow_the_sizes():
    # doubling iterations doubles DM's FLOPs and steps; stacked training takes one step for all models
    a, b = cost.dm(10, 100, 256, width=32), cost.dm(10, 200, 256, width=32)
    assert b.conv == pytest.approx(2 * a.conv) and b.steps == 2 * a.steps
    loop, stacked = cost.train(1000, 5, 8, width=16), cost.train(1000, 5, 8, width=16, gpu_paths=True)
    assert loop.conv == stacked.conv and loop.steps == 8 * stacked.steps
    # the FLOPs of one forward pass are those nets.conv_flops counts, plus the linear head
    from dcprivacy.nets import ConvNet, conv_flops
    assert cost.forward_flops("convnet", 128, 3) == conv_flops(ConvNet(width=128)) + 2 * 2048 * 10
    # gradient matching at the reference's loops: outer matches and (outer − 1)·inner training epochs
    gm = cost.gradient_matching(10, 1, None, 256, width=32)
    assert gm.steps == 10 * 21 + 9 * 50 * 1


def test_fit_reproduces_the_constants(tmp_path, monkeypatch):
    """`cost --fit` on the recorded times gives constants that keep every chapter within 1.5×."""
    measured = cost.measured_timings("quick", "cpu")
    fitted = cost.fit("quick", "cpu", measured)
    assert all(1 / 1.5 <= r <= 1.5 for r in fitted["ratios"].values()), fitted
    # a calibration file overrides the module's constants
    monkeypatch.setenv("DCPRIVACY_RESULTS", str(tmp_path))
    (tmp_path / "timings").mkdir()
    (tmp_path / "timings" / "calibration-cpu.json").write_text(json.dumps({"constants": {"step_seconds": 1.0}}))
    assert cost.device_constants("cpu").step_seconds == 1.0


def test_cost_command_writes_the_prediction(tmp_path, capsys):
    from dcprivacy.cli import main
    out = tmp_path / "cost.json"
    assert main(["cost", "--profile", "standard", "--device", "t4", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["profile"] == "standard" and r["device"] == "t4" and "provenance" in r
    assert max(c["minutes"] for c in r["chapters"].values()) <= 20
    assert "02-condensation" in capsys.readouterr().err  # the table
