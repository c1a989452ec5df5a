"""On-demand benchmark: skill and speed of ``smmdn backtest`` on the shared real data (prints figures).

    python tests/benchmarks/bench_backtest.py --dataset uscrn --mode simulation --seeds 0 1 2
    python tests/benchmarks/bench_backtest.py --dataset uscrn --mode forecast --horizon 7 --seeds 0
    python tests/benchmarks/bench_backtest.py --dataset cosmos --seeds 0 1 2
    python tests/benchmarks/bench_backtest.py --dataset uscrn --preset production --seeds 0 1 2
    python tests/benchmarks/bench_backtest.py --dataset uscrn --speed    # training/inference speed only
    python tests/benchmarks/bench_backtest.py --dataset uscrn --fold --seeds 0  # pre-test fold (issue 20)

``--fold`` scores a fold inside the training period instead of the test period: observations are cut at
``--data-end`` (default: the test start, 2020-09-01) before anything is read, the model trains before
``--fold-start`` (2020-06-01) and June–August is scored, by the same ``run_backtest`` code. Choices (which
setting to adopt) are made there; the test period is scored last. ``--keep DIR`` keeps each seed's
``metrics.json``, ``predictions.csv`` and the model under ``DIR/seed<N>`` (for the per-series analysis).
``--variants JSON`` (simulation mode) rescores the trained model under other per-series mean corrections
(``model.levels``: a list of ``{"level_prior_steps": .., "anomaly_cap_floor": .., "range_margin": ..}``,
absent = off) without retraining: the corrections are recomputed from the validation statistics the model
stores and its scalers (train with one of the settings on, through ``--overrides``, so that it stores them).

Reports mean ± sd over seeds of the median per-series figures, the share of series beating
climatology (CRPS), per-lead CRPS vs persistence (forecast mode), the share of days with both COSMOS
replicates inside the 90 % interval, and speed (training sequences/s, inference series·steps/s, wall
time) next to this machine's fp32 matmul GFLOP/s measured in the same run.

``--speed`` (issue 25) skips the backtest and measures only speed on the real panel: the training loop
(``train_network``, a few epochs) at h64/seq90/batch256 and at the production preset's shapes, each next to
the bare torch LSTM step of the same shapes measured just before and just after it in the same process (the
ceiling is the faster of the two; target >= 85 %), and inference of the production model (target >= 1 M
series·steps/s).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from smmdn.verify.backtest import BacktestOptions, run_backtest

SHARED = Path(__file__).resolve().parents[2] / "../shared/data"
DATASETS = {
    "uscrn": (SHARED / "uscrn-daily-2020/uscrn_daily01_2020.csv", "2020-09-01", "2020-12-31"),
    "cosmos": (SHARED / "cosmos-uk/SPENF-2016-11-24-2021-09-05.csv", "2020-09-01", None),
}


def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def bare_lstm_seq_per_s() -> float:
    lstm, head = torch.nn.LSTM(9, 64, batch_first=True), torch.nn.Linear(64, 9)
    opt = torch.optim.AdamW([*lstm.parameters(), *head.parameters()])
    x = torch.randn(256, 90, 9)
    for i in range(6):
        if i == 1:
            t = time.perf_counter()
        loss = head(lstm(x)[0]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return 256 * 5 / (time.perf_counter() - t)


def bare_step_seq_per_s(n_in: int, hidden: int, seq: int, batch: int, n_out: int) -> float:
    """``bare_lstm_seq_per_s`` at other shapes (the same body: LSTM + linear head, AdamW, a squared loss)."""
    lstm, head = torch.nn.LSTM(n_in, hidden, batch_first=True), torch.nn.Linear(hidden, n_out)
    opt = torch.optim.AdamW([*lstm.parameters(), *head.parameters()])
    x = torch.randn(batch, seq, n_in)
    for i in range(6):
        if i == 1:
            t = time.perf_counter()
        loss = head(lstm(x)[0]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return batch * 5 / (time.perf_counter() - t)


def speed(dataset: str, epochs: int) -> None:
    """Training loop vs the bare step at two shapes, and production inference (see the module docstring)."""
    from smmdn.model.data import build_panel, fit_scalers, prepare, without_derived
    from smmdn.model.presets import load_preset
    from smmdn.model.train import TrainConfig, build_network, recommended_config, train_network

    obs, frc, sites = load(dataset)
    panel = build_panel(obs, frc, sites)
    production = TrainConfig.from_dict(load_preset("production")["settings"])
    configs = {
        "h64/seq90/batch256 (simulation)": recommended_config("simulation", True, hidden=64, seq_len=90,
                                                              warmup=30, batch_size=256, members=1),
        "production preset (forecast)": production,
    }
    print(f"{'shapes':<34} {'train seq/s':>11} {'bare seq/s':>10} {'of bare':>8}  target   load average")
    for label, cfg in configs.items():
        cfg.device, cfg.max_epochs = "cpu", epochs
        pan = without_derived(panel, cfg.feature_groups if cfg.features else ())
        locs = np.arange(len(pan.locations))
        prep = prepare(pan, fit_scalers(pan, len(pan.times), locs, min_obs=cfg.min_train_obs, sd_floor=cfg.sd_floor))
        net = build_network(prep, cfg, n_locations=len(locs) + 1)
        n_in = net.lstm.input_size
        seq = min(cfg.seq_len, len(pan.times))
        shape = dict(n_in=n_in, hidden=cfg.hidden, seq=seq, batch=cfg.batch_size, n_out=3 * cfg.components)
        before = bare_step_seq_per_s(**shape)
        _, history = train_network(prep, locs, 0, len(pan.times), cfg, n_locations=len(locs) + 1)
        after = bare_step_seq_per_s(**shape)
        rate, ceiling = history["sequences_per_s"], max(before, after)
        print(f"{label:<34} {rate:11,.0f} {ceiling:10,.0f} {rate / ceiling:8.0%}  >= 85 % "
              f"{'met' if rate >= 0.85 * ceiling else 'NOT met'}  {os.getloadavg()[0]:.2f}  "
              f"(inputs {n_in}, hidden {cfg.hidden}, seq {seq}, batch {cfg.batch_size}; bare before {before:,.0f}"
              f", after {after:,.0f})")
    with tempfile.TemporaryDirectory() as tmp:
        from smmdn.model.api import fit

        cfg = TrainConfig.from_dict(load_preset("production")["settings"])
        cfg.device, cfg.max_epochs, cfg.refit, cfg.calibrate = "cpu", 1, False, False
        fit(obs, frc, sites, cfg, train_end=DATASETS[dataset][1]).save(Path(tmp) / "model")
        rate = inference_rate(Path(tmp) / "model", obs, frc, sites)
    print(f"inference, production preset: {rate / 1e6:.2f} M series·steps/s (simulation pass over the whole "
          f"panel; target >= 1 M: {'met' if rate >= 1e6 else 'NOT met'}); load average {os.getloadavg()[0]:.2f}")


def load(dataset: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    path = DATASETS[dataset][0]
    if dataset == "uscrn":
        from smmdn.sources.uscrn_csv import read_uscrn_daily_csv

        return read_uscrn_daily_csv(path)
    from smmdn.sources.cosmos import read_cosmos_csv

    return read_cosmos_csv(str(path))


def _abridged(factors: list[float], head: int = 6) -> str:
    """The per-distance factors as ``n blocks: first few .. last`` (a long test has hundreds of blocks)."""
    if not factors:
        return "none"
    shown = ", ".join(f"{f:.3f}" for f in factors[:head])
    return f"{len(factors)} blocks: {shown}" + (f" .. {factors[-1]:.3f}" if len(factors) > head else "")


def fold_window(obs: pd.DataFrame, data_end: str, fold_start: str) -> tuple[pd.DataFrame, str, str]:
    """A fold inside the training period: the observations before ``data_end`` (the test period is never
    read) and the fold's scored window ``fold_start`` .. the day before ``data_end``."""
    from smmdn.model.api import _before, to_utc

    if to_utc(fold_start) >= to_utc(data_end):
        raise SystemExit("--fold-start must lie before --data-end")
    last = (pd.Timestamp(data_end) - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    return _before(obs, to_utc(data_end), "observations"), fold_start, last


def rescore_variants(model_dir: Path, obs: pd.DataFrame, frc: pd.DataFrame, sites: pd.DataFrame | None,
                     start: str, end: str | None, variants: list[dict]) -> list[dict]:
    """The trained model's simulation of ``start .. end`` scored under each per-series mean correction of
    ``variants`` (recomputed from the stored validation statistics; the network is the same)."""
    from smmdn.model.api import prepared_for, to_utc
    from smmdn.model.checkpoint import load_model
    from smmdn.model.levels import correction_from_stats
    from smmdn.verify.backtest import _simulation
    from smmdn.verify.metrics import kge_tail, summarise_scores

    model = load_model(model_dir)
    stats = model.correction.stats
    if not stats:
        raise SystemExit("--variants: the model stores no validation statistics (set level_prior_steps, "
                         "anomaly_cap_floor or range_margin in --overrides)")
    panel, prep = prepared_for(model, obs, frc, sites)
    t0 = panel.index_of(to_utc(start))
    t1 = len(panel.times) if end is None else int(panel.times.searchsorted(to_utc(end), side="right"))
    out = []
    for v in variants:
        model.correction = correction_from_stats(stats, prior_steps=v.get("level_prior_steps"),
                                                 cap_floor=v.get("anomaly_cap_floor"),
                                                 location_stats=model.scalers.location_stats,
                                                 range_margin=v.get("range_margin"))
        per_series = _simulation(model, panel, prep, t0, t1, min(20, max(1, (t1 - t0) // 2)))[1]
        tail, med = kge_tail(per_series), summarise_scores(per_series)["median"]
        row = {**v, "n": len(per_series), "kge_p10": tail["p10"], "kge_mean": tail["mean"],
               "kge_median": tail["median"], "below_0": tail["share_below_0"], "crps_median": med["crps"],
               "rmse_median": med["rmse"], "coverage_90_median": med["coverage_90"],
               "tail_traits": {k: [round(t["share_of_tail"], 2), round(t["share_of_all"], 2)]
                               for k, t in tail["traits"].items()},
               "worst": [f"{w['site']}/{w['depth_cm']:g} {w['kge']:.2f}" for w in tail["worst"][:5]]}
        out.append(row)
        print("  variant " + json.dumps(row))
    return out


def inference_rate(model_dir: Path, obs: pd.DataFrame, frc: pd.DataFrame, sites: pd.DataFrame | None) -> float:
    from smmdn.model.api import prepared_for, simulate_panel
    from smmdn.model.checkpoint import load_model

    model = load_model(model_dir)
    panel, prep = prepared_for(model, obs, frc, sites)
    t = time.perf_counter()
    w, _, _ = simulate_panel(model, panel, prep, 0, len(panel.times))
    return w.shape[0] * w.shape[1] / (time.perf_counter() - t)


def fmt(values: list[float], digits: int = 3) -> str:
    v = np.array([x for x in values if x is not None], dtype=float)
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}" if len(v) else "n/a"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", choices=DATASETS, default="uscrn")
    p.add_argument("--mode", choices=("simulation", "forecast"), default="simulation")
    p.add_argument("--horizon", type=int, default=7)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--max-epochs", type=int)
    p.add_argument("--overrides", default="{}", help="JSON of TrainConfig fields")
    p.add_argument("--preset", help="a named preset (production: what the daily cycle trains; forecast mode)")
    p.add_argument("--speed", action="store_true", help="speed only: training vs the bare step, inference")
    p.add_argument("--speed-epochs", type=int, default=4, help="epochs of the training loop with --speed")
    p.add_argument("--json-out", help="also write every seed's metrics.json (without per_series) here")
    p.add_argument("--fold", action="store_true", help="score the pre-test fold, not the test period")
    p.add_argument("--data-end", help="with --fold: nothing at or after it is read (default: the test start)")
    p.add_argument("--fold-start", default="2020-06-01", help="with --fold: the fold's scored period starts here")
    p.add_argument("--variants", help="JSON list of per-series mean corrections to rescore (see the docstring)")
    p.add_argument("--keep", help="keep each seed's backtest output (metrics.json, predictions.csv) under here")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    if args.preset:
        from smmdn.model.presets import load_preset

        args.mode = load_preset(args.preset)["settings"]["mode"]
    path, start, end = DATASETS[args.dataset]
    if not path.exists():
        raise SystemExit(f"skip: {path} absent")
    print(f"load average (1, 5, 15 min): {os.getloadavg()}")
    print(f"fp32 matmul: {matmul_gflops():.0f} GFLOP/s; bare LSTM step (h64, seq90, b256): "
          f"{bare_lstm_seq_per_s():.0f} seq/s; torch threads {torch.get_num_threads()}")
    if args.speed:
        speed(args.dataset, args.speed_epochs)
        return
    obs, frc, sites = load(args.dataset)
    if args.fold:
        data_end = args.data_end or start
        obs, start, end = fold_window(obs, data_end, args.fold_start)
        print(f"fold: observations cut before {data_end}; scored {start} .. {end}")
    rows: list[dict] = []
    full: list[dict] = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            out_dir = f"{args.keep}/seed{seed}" if args.keep else f"{tmp}/out"
            model_dir = f"{out_dir}/model" if args.keep else f"{tmp}/model"
            opts = BacktestOptions(test_start=start, test_end=end, mode=args.mode, horizon=args.horizon, seed=seed,
                                   max_epochs=args.max_epochs, save_model=model_dir,
                                   config_overrides=json.loads(args.overrides), preset=args.preset)
            m = run_backtest(obs, frc, sites, out_dir, opts)
            rate = inference_rate(Path(model_dir), obs, frc, sites) if seed == args.seeds[0] else None
            if args.variants:
                rescore_variants(Path(model_dir), obs, frc, sites, start, end, json.loads(args.variants))
        med = m["overall"]["median"]
        row = {**{k: med[k] for k in ("kge", "kge_2012", "spearman", "rmse", "crps", "crps_skill", "coverage_50",
                                      "coverage_90", "width_90")},
               "beat_clim": m["overall"]["share_beating_climatology"],
               "beat_pers": m["overall"]["share_beating_persistence"], "n": m["n_series"],
               "wall": m["wall_time_s"], "train_seq_s": m["training"].get("sequences_per_s"),
               "spread": m["spread_factor"], "spread_per_lead": m.get("spread_per_lead"),
               "spread_by_distance": _abridged(m.get("spread_by_distance") or []),
               "valid_steps": m["training"].get("valid_steps"),
               "calibration_windows": m["training"].get("calibration_windows"),
               "best_epoch": m["training"].get("best_epoch"),
               "both_in_90": m["replicates"].get("all_replicates_in_90"), "infer": rate,
               "per_lead": m.get("per_lead"), "tail": m["kge_tail"], "config_hash": m["config_hash"],
               "skill": m.get("skill_vs_persistence")}
        rows.append(row)
        full.append({k: v for k, v in m.items() if k != "per_series"} | {"seed": seed})
        print(f"seed {seed}: " + json.dumps({k: v for k, v in row.items() if k not in ("per_lead", "tail", "skill")},
                                            default=str))
        tail = row["tail"]
        print(f"  KGE tail: p10 {tail['p10']:.3f} mean {tail['mean']:.3f} below 0 {tail['share_below_0']:.3f}; worst: "
              + "; ".join(f"{w['site']}/{w['depth_cm']:g} {w['kge']:.2f} ({', '.join(w['reasons'])})"
                          for w in tail["worst"]))
        print("  tail traits (share of tail / of all): " + ", ".join(
            f"{k} {v['share_of_tail']:.2f}/{v['share_of_all']:.2f}" for k, v in tail["traits"].items()))
        if row["per_lead"]:
            for h, v in row["per_lead"].items():
                print(f"  lead {h}: crps {v['crps']:.4f} persistence {v['crps_persistence']:.4f} "
                      f"skill_vs_pers {v['crps_skill_persistence']:.3f} share_beating_pers "
                      f"{v['share_beating_persistence']:.2f} coverage_90 {v['coverage_90']:.3f}")
    print(f"\n{args.dataset} {args.mode} (preset {args.preset or 'task'}, config {rows[0]['config_hash']}): "
          f"{rows[0]['n']} series, seeds {args.seeds}")
    print(f"  KGE p10      {fmt([r['tail']['p10'] for r in rows])}")
    print(f"  KGE mean     {fmt([r['tail']['mean'] for r in rows])}")
    for key in ("kge", "kge_2012", "spearman", "rmse", "crps", "crps_skill", "coverage_50", "coverage_90",
                "width_90", "beat_clim", "beat_pers", "both_in_90", "spread", "train_seq_s", "wall"):
        print(f"  median {key:12s} {fmt([r[key] for r in rows], 4 if key in ('rmse', 'crps', 'width_90') else 3)}")
    print(f"  inference    {rows[0]['infer']:.0f} series·steps/s (simulation pass over the whole panel)")
    if rows[0]["per_lead"]:
        for h in rows[0]["per_lead"]:
            crps = [r["per_lead"][h]["crps"] for r in rows]
            pers = [r["per_lead"][h]["crps_persistence"] for r in rows]
            skill = [r["per_lead"][h]["crps_skill_persistence"] for r in rows]
            share = [r["per_lead"][h]["share_beating_persistence"] for r in rows]
            cov = [r["per_lead"][h]["coverage_90"] for r in rows]
            pooled = [r["skill"]["per_lead"][h]["skill_of_mean_crps"] for r in rows]
            print(f"  lead {h}: crps {fmt(crps, 4)}  persistence {fmt(pers, 4)}  skill_vs_pers {fmt(skill)}  "
                  f"skill_of_mean_crps {fmt(pooled)}  share_beating_pers {fmt(share, 2)}  coverage_90 {fmt(cov)}"
                  f"  (target skill >= {rows[0]['skill']['target']})")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(full, indent=1, default=str), encoding="utf-8")
    print(f"load average (1, 5, 15 min): {os.getloadavg()}")


if __name__ == "__main__":
    main()
