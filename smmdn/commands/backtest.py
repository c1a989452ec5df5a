"""``smmdn backtest``: train before --test-start, score the test period (a stable contract)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "backtest",
        help="train on data before --test-start and score the test period (metrics.json, predictions.csv)",
        description="Train on everything before --test-start (validation window also before it), predict the "
        "test period with the forcing given ('observed weather') and score every series.",
    )
    p.add_argument("--observations", required=True, help="observations CSV: time, site, depth_cm, sensor, vwc")
    p.add_argument("--forcing", required=True, help="forcing CSV: time, site, numeric variables")
    p.add_argument("--sites", help="optional sites CSV: site, latitude, longitude, elevation_m, numeric attributes")
    p.add_argument("--test-start", required=True, help="first time of the test period (YYYY-MM-DD or ISO instant)")
    p.add_argument("--test-end", help="last time of the test period (inclusive; default: end of forcing)")
    p.add_argument("--test-sites", default="", help="comma-separated sites left out of training (ungauged)")
    p.add_argument("--mode", choices=("simulation", "forecast"), default=None,
                   help="default: simulation, or the preset's mode with --preset")
    p.add_argument("--preset", help="train a named preset instead of the task preset: `production` is exactly "
                   "what the daily cycle trains (forecast mode, daily data)")
    p.add_argument("--horizon", type=int, default=7, help="forecast leads 1..N (forecast mode)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-epochs", type=int, help="upper bound on training epochs")
    p.add_argument("--init-model", help="model directory to fine-tune instead of training from scratch")
    p.add_argument("--min-test-obs", type=int, help="series need this many test observations to be scored "
                   "(default: 20, or half the test period when shorter)")
    p.add_argument("--save-model", help="also write the trained model directory here")
    p.add_argument("--progress", action="store_true", help="show a training progress bar")
    p.add_argument("--out", required=True, help="output directory (metrics.json, predictions.csv)")
    p.set_defaults(handler=_handle)


def _preset_mode(preset: str | None) -> str:
    """The mode a preset trains (simulation without one: the comparable default)."""
    from smmdn.errors import InputError
    from smmdn.model.presets import load_preset

    if preset is None:
        return "simulation"
    try:
        return str(load_preset(preset)["settings"]["mode"])
    except ValueError as exc:
        raise InputError(str(exc), where="--preset", fix="name a preset file of smmdn/model/preset_files") from exc


def _handle(args: argparse.Namespace) -> int:
    from smmdn.verify.backtest import BacktestOptions, run_backtest_files

    options = BacktestOptions(
        test_start=args.test_start, test_end=args.test_end,
        test_sites=[s.strip() for s in args.test_sites.split(",") if s.strip()],
        mode=args.mode or _preset_mode(args.preset), preset=args.preset, horizon=args.horizon, seed=args.seed,
        max_epochs=args.max_epochs,
        init_model=args.init_model, min_test_obs=args.min_test_obs, progress=args.progress,
        save_model=args.save_model,
    )
    metrics = run_backtest_files(args.observations, args.forcing, args.sites, args.out, options)
    med = metrics["overall"]["median"]
    if metrics.get("preset"):
        print(f"preset {metrics['preset']} (config {metrics['config_hash']}, {metrics['mode']} mode)")
    print(
        f"{metrics['n_series']} series  median KGE {med['kge']:.3f}  Spearman {med['spearman']:.3f}  "
        f"RMSE {med['rmse']:.4f}  CRPS {med['crps']:.4f}  coverage_90 {med['coverage_90']:.3f}  -> {args.out}"
    )
    return 0
