"""The drift verdict and the skill tables from the window's sums in the database (``Window``), on both backends,
equal what the window's score rows give (``window_scores``: the rows, as verification read them before): the
same report field for field, the same PIT histogram (also for PITs on a bin edge, at 0 and 1 and outside
[0, 1]), the same per-lead table, and the lineage filter of the full retrain applied to both."""

from __future__ import annotations

import numpy as np
import pandas as pd

from smmdn.config import Settings
from smmdn.store import verification as scores
from smmdn.verify import verification as V
from tests.helpers import alert_world as W

DAY = pd.Timedelta(days=1)


def _rows(world: W.World, seed: int) -> pd.DataFrame:
    """Score rows of two model versions over 12 days, 3 sites, 3 sensors, 3 leads, PITs drawn skewed, with edge
    cases planted."""
    rng = np.random.default_rng(seed)
    out = []
    for d in range(1, 13):
        for site in world.sites:
            for sensor in "abc":
                for lead in (1, 2, 3):
                    day = world.day(d)
                    out.append({"valid_time": day, "site": site, "depth_cm": 10.0, "sensor": sensor,
                                "issue_time": day - lead * DAY, "model_version": "m0" if rng.random() < 0.3 else "m1",
                                "lead": lead, "observed": 0.2, "mean": 0.21, "crps": float(rng.gamma(2.0, 0.004)),
                                "pit": float(rng.beta(0.8, 1.3)), "in_50": bool(rng.random() < 0.45),
                                "in_90": bool(rng.random() < 0.86), "width_50": 0.02,
                                "width_90": float(rng.uniform(0.04, 0.08)), "scored_at": world.now_after(13)})
    frame = pd.DataFrame(out)
    edges = np.linspace(0.0, 1.0, 11)
    planted = [*edges, 0.3, 0.1 * 3, 0.7, np.nextafter(0.3, 0.0), 1.0000000000000002, -0.0]
    frame.loc[: len(planted) - 1, "pit"] = planted
    return frame


def _reference(store, now: pd.Timestamp, cfg: Settings) -> tuple[dict, pd.DataFrame]:  # type: ignore[no-untyped-def]
    """The verdict and per-lead table from the rows (the arithmetic verification used before the sums)."""
    v, latest = V.window_scores(store, now, cfg)
    end = latest + DAY
    _, lineage = V.since_last_full_retrain(store)
    if lineage is not None:
        v = v.loc[v["model_version"].isin(lineage)]
    independent = V.independent_count(v)
    first = (end - cfg.drift_window_days * DAY).date().isoformat()
    report = {"n": len(v), "independent": independent, "window": [first, latest.date().isoformat()]}
    if independent >= cfg.drift_min_pairs:
        report["coverage_50"] = round(float(v["in_50"].mean()), 4)
        report["coverage_90"] = round(float(v["in_90"].mean()), 4)
        chi2, p, hist = V.pit_uniformity(v["pit"].to_numpy(), min(independent, cfg.drift_pit_effective_n))
        report |= {"pit_chi2": chi2, "pit_p": p, "pit_histogram": hist}
    return report, V._summary(V.window_scores(store, now, cfg)[0], ["lead"])


def test_sums_give_the_verdict_and_skill_the_rows_give(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    world = W.build(store, sites=("S1", "S2", "S3"), sensors=("a", "b", "c"), days=14)
    frame = _rows(world, seed=3)
    scores.write_verification(store, frame)
    now = world.now_after(13)
    for min_pairs, window_days in ((10, 30), (10, 5), (10_000, 30)):
        cfg = Settings(_env_file=None, home=tmp_path, drift_min_pairs=min_pairs, drift_window_days=window_days)
        got = V.drift_report(store, now, cfg).to_dict()
        want, by_lead = _reference(store, now, cfg)
        assert {k: got[k] for k in want} == want
        if min_pairs == 10:
            assert got["pit_histogram"]  # a verdict was made: the histogram was compared
        skill = V.skill_from_sums(V.window_sums(store, now, cfg))
        pd.testing.assert_frame_equal(skill["by_lead"], by_lead, check_dtype=False)
        pit = V.window_scores(store, now, cfg)[0]["pit"].to_numpy()
        pit = pit[np.isfinite(pit)]
        counts = np.histogram(skill["pit"]["pit"].to_numpy(), bins=10, range=(0, 1))[0]
        assert len(skill["pit"]) == len(pit) and (counts == np.histogram(pit, bins=10, range=(0, 1))[0]).all()
