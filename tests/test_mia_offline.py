"""Offline LiRA's leave-one-out gives members and non-members the same number of OUT shadows (issue 22 §4)."""
import numpy as np

from dcprivacy import metrics, mia


def test_offline_leave_one_out_without_signal_gives_tpr_equal_to_fpr():
    """Scores independent of membership (a per-example level plus noise): at 0.1% and 1% FPR the offline
    attack's TPR is the FPR, within the noise of 16 runs × 30000 examples (an example's scores in all runs
    share its shadows, so the effective sample is nearer 30000 than 480000). Averaged over FPRs from 0.1% to
    1% the ratio TPR/FPR is 1 within ±0.08; the unbalanced scheme (K/2 OUT shadows for members, K/2 − 1 for
    non-members: the non-members' centres are noisier, their scores more spread) fell to 0.85 and 0.65."""
    rng = np.random.default_rng(0)
    K, n = 16, 30000
    m = mia.membership_masks(K, n, seed=1).numpy()
    s = rng.normal(size=(K, n)) + rng.normal(0, 3, n)
    grid = np.geomspace(1e-3, 1e-2, 9)
    for fixed_variance in (False, True):
        r = mia.leave_one_out(s, m, attack="offline", fixed_variance=fixed_variance)
        # every score used K/2 − 1 OUT shadows: a non-member target's count, whatever the label
        tpr = {f: metrics.tpr_at_fpr(r.scores, r.labels, f) for f in (1e-3, 1e-2)}
        assert 0.7e-3 < tpr[1e-3] < 1.4e-3 and 0.9e-2 < tpr[1e-2] < 1.1e-2, (fixed_variance, tpr)
        ratio = np.mean([metrics.tpr_at_fpr(r.scores, r.labels, f) / f for f in grid])
        assert abs(ratio - 1) < 0.08, (fixed_variance, ratio)
        # the same attack with every OUT shadow the target leaves (unbalanced) fails the same check
        old = np.stack([mia._attack(np.delete(s, t, 0)[..., None], np.delete(m, t, 0), s[t:t + 1, :, None],
                                    "offline", fixed_variance)[0] for t in range(K)])
        old_ratio = np.mean([metrics.tpr_at_fpr(old.ravel(), m.ravel(), f) / f for f in grid])
        assert old_ratio < 0.9, (fixed_variance, old_ratio)

