"""On-demand: choose the simulation calibration's knobs again on a fold inside the training period.

    python tests/benchmarks/bench_calibration_folds.py --fold-end 2020-06-01 --fold-test-end 2020-09-01

The knobs (``model.calibrate``: block length ``DISTANCE_BLOCK_DAYS``, extrapolation ``DISTANCE_EXTEND``,
slope cap ``MAX_GROWTH``) were once chosen looking at USCRN test-period coverage (docs/results.md). Here the
observations are cut at ``--data-end`` (the backtest's test start) before anything else; the simulation task
preset is trained exactly as ``fit`` does it (early stopping and validation predictions on the window before
``--fold-end``, then a refit through it), and every knob combination is fitted on the validation predictions
and scored on the fold's own pseudo-test (``--fold-end`` .. ``--fold-test-end``), by the median over series
of CRPS and of 90 % coverage, as the backtest scores. Prints every combination and the one with the lowest
median CRPS; the test period is not read.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from smmdn.model.calibrate import distance_factors, fit_calibration
from smmdn.model.mixture import central_interval, mixture_crps

SHARED = Path(__file__).resolve().parents[2] / "../shared/data"
USCRN = SHARED / "uscrn-daily-2020/uscrn_daily01_2020.csv"


def main() -> None:
    import torch

    from smmdn.model.api import _before, to_utc, validation_steps
    from smmdn.model.data import build_panel, fit_scalers, prepare, without_derived
    from smmdn.model.predict import simulate
    from smmdn.model.train import _valid_predictions, pick_device, recommended_config, train_members
    from smmdn.sources.uscrn_csv import read_uscrn_daily_csv

    p = argparse.ArgumentParser()
    p.add_argument("--data-end", default="2020-09-01", help="nothing at or after it is read (the test start)")
    p.add_argument("--fold-end", default="2020-06-01")
    p.add_argument("--fold-test-end", default="2020-09-01")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overrides", default="{}")
    p.add_argument("--json-out")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    if not USCRN.exists():
        raise SystemExit(f"skip: {USCRN} absent")
    if to_utc(args.fold_test_end) > to_utc(args.data_end):
        raise SystemExit("the fold's pseudo-test must end by --data-end")
    started = time.perf_counter()
    print(f"load average: {os.getloadavg()}; torch threads {torch.get_num_threads()}")
    obs, frc, sites = read_uscrn_daily_csv(USCRN)
    obs = _before(obs, to_utc(args.data_end), "observations")  # the test period is never read
    cfg = recommended_config("simulation", True, seed=args.seed, **json.loads(args.overrides))
    fold_end, test_end = to_utc(args.fold_end), to_utc(args.fold_test_end)
    panel = without_derived(build_panel(obs, frc, sites), cfg.feature_groups if cfg.features else ())
    v1, t_end = panel.index_of(fold_end), panel.index_of(test_end)
    locs = np.arange(len(panel.locations))
    v0 = v1 - validation_steps(cfg, panel, locs, v1)
    device = pick_device("cpu")
    scalers = fit_scalers(panel, v0, locs, min_obs=cfg.min_train_obs, sd_floor=cfg.sd_floor)
    prep = prepare(panel, scalers)
    net, hist = train_members(prep, locs, 0, v0, cfg, valid=(v0, v1), n_locations=len(scalers.location_index))
    lw, mu, sg, y, rows = _valid_predictions(net, prep, locs, v0, v1, cfg, device, with_rows=True)
    keys = [panel.keys[i] for i in rows]
    scalers = fit_scalers(panel, v1, locs, min_obs=cfg.min_train_obs, sd_floor=cfg.sd_floor)  # the refit
    prep = prepare(panel, scalers)
    net, _ = train_members(prep, locs, 0, v1, cfg, epochs=[max(e or 1, 1) for e in hist["member_best_epochs"]],
                           n_locations=len(scalers.location_index))
    print(f"trained in {time.perf_counter() - started:.0f} s (validation {v1 - v0} days, fold test {t_end - v1})")
    results = []
    for block, extend, growth in itertools.product((7, 14), (1.0, 2.0, 4.0, 8.0), (0.0, 0.25, 0.5, 1.0)):
        cal = fit_calibration(lw, mu, sg, y, keys, per_lead=False, prior_steps=None, distance_block=block,
                              extend=extend, max_growth=growth)
        f = distance_factors(cal.by_distance, cal.distance_block, np.arange(1, t_end - v1 + 1))
        w, m, s = simulate(net, prep, locs, v1, t_end, cfg.seq_len, cfg.sigma_floor, device, False,
                           f[None, :] * np.ones((len(locs), 1)))
        lo, hi = central_interval(0.9, w, m, s)
        crps, cover = [], []
        for li in locs:
            for ri in range(len(panel.sensors[li])):
                yy = panel.targets[li, v1:t_end, ri]
                ok = np.isfinite(yy)
                if ok.sum() < 20:
                    continue
                crps.append(float(np.mean(mixture_crps(yy[ok], w[li][ok], m[li][ok], s[li][ok]))))
                cover.append(float(np.mean((yy[ok] >= lo[li][ok]) & (yy[ok] <= hi[li][ok]))))
        row = {"block_days": block, "extend": extend, "max_growth": growth, "median_crps": float(np.median(crps)),
               "median_coverage_90": float(np.median(cover)), "n_series": len(crps),
               "first_factor": cal.by_distance[0] if cal.by_distance else cal.overall,
               "last_factor": float(f[-1])}
        results.append(row)
        print(json.dumps(row))
    best = min(results, key=lambda r: r["median_crps"])
    today = next(r for r in results if (r["block_days"], r["extend"], r["max_growth"]) == (7, 4.0, 0.5))
    print(f"\nbest by median CRPS: {json.dumps(best)}\ntoday's knobs (7, 4, 0.5): {json.dumps(today)}")
    print(f"wall {time.perf_counter() - started:.0f} s; load average {os.getloadavg()}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
