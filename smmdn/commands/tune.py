"""``smmdn tune``: Optuna (TPE, pruning) over a preset's search space on folds inside the training period."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tune", help="search a preset's settings on rolling-origin folds before --train-end (study to a file)",
        description="Optuna TPE with median pruning over the preset's search_space. Observations at or after "
        "--train-end are never read (give the backtest's --test-start). Writes study.jsonl (Optuna journal), "
        "summary.json and preset.json (the preset with the best settings, to commit under "
        "smmdn/model/preset_files/) into --out.")
    p.add_argument("--observations", required=True, help="observations CSV: time, site, depth_cm, sensor, vwc")
    p.add_argument("--forcing", required=True, help="forcing CSV: time, site, numeric variables")
    p.add_argument("--sites", help="optional sites CSV")
    p.add_argument("--train-end", required=True, help="end of the data the study may read (exclusive)")
    p.add_argument("--preset", default="production", help="preset whose search_space is searched")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--folds", type=int, default=3, help="rolling-origin folds ending at --train-end")
    p.add_argument("--fold-days", type=int, default=28, help="length of each fold's scored window (days)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--set", default="{}", help="JSON of settings held fixed (e.g. '{\"max_epochs\": 10}')")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from smmdn.errors import InputError
    from smmdn.model.tune import TuneOptions, run_study
    from smmdn.verify.backtest import read_csv

    try:
        fixed = json.loads(args.set)
    except json.JSONDecodeError as exc:
        raise InputError(f"--set is not JSON: {exc}", where="--set", fix="give a JSON object of settings") from exc
    if not isinstance(fixed, dict):
        raise InputError("--set must be a JSON object", where="--set", fix='e.g. --set \'{"max_epochs": 10}\'')
    options = TuneOptions(train_end=args.train_end, out=args.out, preset=args.preset, trials=args.trials,
                          folds=args.folds, fold_days=args.fold_days, seed=args.seed, timeout_s=args.timeout,
                          fixed=fixed)
    obs = read_csv(args.observations, "observations")
    frc = read_csv(args.forcing, "forcing")
    sites = read_csv(args.sites, "sites") if args.sites else None
    summary = run_study(obs, frc, sites, options)
    best = summary["best"]
    print(f"{summary['n_complete']} complete, {summary['n_pruned']} pruned of {summary['n_trials']} trials; "
          f"preset's own settings: {summary['preset_value']}; best trial {best['number']}: mean fold CRPS "
          f"{best['value']:.5f} with {json.dumps(best['settings'])} -> {args.out}/preset.json")
    return 0
