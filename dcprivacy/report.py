"""The report of an attack on K runs of one pipeline, as the command line and the GPU reproduction write it.

:func:`attack_report` runs every attack the package has (:data:`dcprivacy.pipelines.ATTACKS`, whatever it
holds) and summarises each on all members and, where the pipeline initialised from real images, on the
members that initialised a synthetic image against the other members. ``python -m dcprivacy attack`` /
``attack-merge`` (:mod:`dcprivacy.cli`) and step 3 of :mod:`dcprivacy.reproduce` both call it; it lives
here, below both, so that neither imports the other.
"""
from __future__ import annotations


def attack_report(runs, masks, y, cfg, seed) -> dict:
    """Test accuracy of the K models and, for every attack in ``pipelines.ATTACKS``, its summary
    (:func:`dcprivacy.pipelines.group_summary`, ``cfg.bootstrap`` resamples) over all members, and over
    the initialising and the other members when some member initialised a synthetic image."""
    from .pipelines import ATTACKS, attack, group_summary
    out = {"test_accuracy_mean": runs.test_accuracy.mean().item(), "test_accuracy_std": runs.test_accuracy.std().item(),
           "train_size_mean": runs.train_size.float().mean().item(), "attacks": {}}
    members = masks[runs.runs]
    for name in ATTACKS:
        res = attack(runs, masks, y, name)
        entry = {"all": group_summary(res, bootstrap=cfg.bootstrap, seed=seed)}
        if runs.init_mask.any() and (members & ~runs.init_mask).any():  # (a subset may hold every member)
            entry["init_members"] = group_summary(res, runs.init_mask, bootstrap=cfg.bootstrap, seed=seed)
            entry["other_members"] = group_summary(res, members & ~runs.init_mask, bootstrap=cfg.bootstrap, seed=seed)
        out["attacks"][name] = entry
    return out


__all__ = ["attack_report"]
