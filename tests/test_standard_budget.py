"""Every chapter fits its budget at the pessimistic end of the cost model, for every profile, device and dataset
with a budget (standard on a T4: 20 minutes per chapter opened alone on a fresh runtime, even if the GPU
reaches only cost.PESSIMISTIC_EFFICIENCY of its peak). A chapter that gains work, or a new dataset's sizes,
is checked here without editing this file."""
import pytest

from dcprivacy import cost, data


@pytest.mark.parametrize("dataset", data.DATASETS)
@pytest.mark.parametrize("profile,device", sorted(cost.BUDGET_MINUTES))
def test_every_chapter_fits_its_budget_at_the_pessimistic_efficiency(profile, device, dataset, monkeypatch):
    monkeypatch.setenv("DCPRIVACY_DATASET", dataset)  # the dataset switch (dcprivacy.data.dataset_name)
    assert set(cost.BUDGET_MINUTES[profile, device]) == set(cost.CHAPTERS), "every chapter needs a budget"
    over = cost.over_budget(profile, device, pessimistic=True)
    assert not over, {stem: f"{m:.1f} min > {b} min budget" for stem, (m, b) in over.items()}


def test_the_pessimistic_end_is_slower_where_constants_are_assumed_and_unchanged_where_measured():
    t4, slow = cost.device_constants("t4"), cost.device_constants("t4", pessimistic=True)
    assert slow.conv_efficiency == pytest.approx(cost.PESSIMISTIC_EFFICIENCY)
    assert slow.conv_efficiency < t4.conv_efficiency
    assert slow.dense_efficiency / t4.dense_efficiency == pytest.approx(slow.conv_efficiency / t4.conv_efficiency)
    assert (slow.step_seconds, slow.peak) == (t4.step_seconds, t4.peak)
    for stem in cost.CHAPTERS:
        point = cost.chapter_minutes(stem, "standard", "t4")
        assert cost.chapter_minutes(stem, "standard", "t4", pessimistic=True) >= point
    # the CPU's constants are fitted to a recorded run (results/timings/calibration-cpu.json): no pessimism added
    assert cost.device_constants("cpu", pessimistic=True) == cost.device_constants("cpu")
    r = cost.predict("standard", "t4")["chapters"]
    assert all(c["minutes_pessimistic"] >= c["minutes"] for c in r.values())


def test_over_budget_reports_a_chapter_that_does_not_fit(monkeypatch):
    tight = {k: dict(v) for k, v in cost.BUDGET_MINUTES.items()}
    tight["standard", "t4"]["02-condensation"] = 1.0
    del tight["standard", "t4"]["03-linear-bound"]
    monkeypatch.setattr(cost, "BUDGET_MINUTES", tight)
    over = cost.over_budget("standard", "t4")
    assert set(over) == {"02-condensation", "03-linear-bound"}
    assert over["02-condensation"][0] > 1.0 and over["03-linear-bound"][1] is None
