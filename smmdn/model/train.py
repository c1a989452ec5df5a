"""Training loop: AdamW, cosine LR, early stopping on a validation window, gradient clipping, NaN guard.

Sequence-to-sequence: each batch holds random chunks of ``seq_len`` steps; the first ``warmup`` steps of
a chunk only spin up the LSTM state and carry no loss; every later step with an observation adds the
mixture NLL of each replicate sensor. In forecast mode a chunk sees the observed state (lagged one
step) up to a random cut and nothing after it, with a share of chunks fully hidden (simulation regime)
and random single observations dropped, so one model serves both regimes.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from tqdm.auto import tqdm

from smmdn.errors import ModelError
from smmdn.model.calibrate import DISTANCE_BLOCK_DAYS, Calibration, fit_calibration
from smmdn.model.data import Prepared, gather, sample_chunks
from smmdn.model.mixture import DEFAULT_SIGMA_FLOOR, mixture_crps, torch_nll
from smmdn.model.network import MixtureEnsemble, MixtureLSTM, NetworkConfig
from smmdn.model.predict import Network, _autocast, forecast_issues, n_state_channels, simulate, state_inputs

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Training and architecture settings (plain JSON in checkpoints). Lengths are in time steps."""

    mode: str = "simulation"  # or "forecast": adds the observed-state channel
    hidden: int = 64
    layers: int = 1
    dropout: float = 0.4
    components: int = 3
    forget_bias: float = 3.0
    embedding_dim: int = 0  # > 0: learnt per-location embedding
    features: bool = True  # forcing-derived inputs (model.features) ...
    feature_groups: list[str] = field(default_factory=lambda: ["precip"])  # ... of these groups
    sigma_floor: float = DEFAULT_SIGMA_FLOOR  # m3/m3
    seq_len: int = 180
    warmup: int = 60
    batch_size: int = 64
    max_epochs: int = 30
    lr: float = 3e-3
    weight_decay: float = 1e-3
    clip_norm: float = 1.0
    patience: int = 12
    min_epochs: int = 5
    chunks_per_location: int = 2  # per epoch
    valid_steps: int = 62  # length of the validation window just before the training end (the least)
    valid_fraction: float = 0.0  # > 0: the window is this share of the observed training span ...
    valid_max_steps: int = 365  # ... but no longer than this
    min_train_obs: int = 30  # locations with fewer training observations count as ungauged
    sd_floor: float = 0.01  # smallest per-location sd used for standardising (m3/m3)
    calibrate: bool = True  # fit a spread factor on the validation window
    refit: bool = True  # after choosing epochs/spread, retrain on train + validation data
    p_hidden: float = 0.1  # forecast mode: share of chunks with the state fully hidden
    p_long_cut: float = 0.2  # forecast mode: share of chunks cut anywhere (else within 2 horizons of the end)
    spread_per_series: bool = True  # spread factor fitted on the series-balanced (log) CRPS, not the pooled one
    spread_prior_steps: float | None = None  # per-location spread factors shrunk with this many steps (off)
    balance_regimes: bool = True  # forecast mode: visible-state and free-running steps weigh one half each
    obs_dropout: float = 0.1  # forecast mode: share of single observations hidden
    horizon: int = 7  # forecast mode: leads used for validation
    residual: bool = True  # forecast mode: mixture means = last observed state + predicted change
    members: int = 1  # ensemble size (independently seeded networks pooled into one mixture)
    level_prior_steps: float | None = None  # simulation: per-series level offset from the validation window
    anomaly_cap_floor: float | None = None  # simulation: per-series anomaly scale (<= 1, >= this) from it
    range_margin: float | None = None  # simulation: mean kept within the training range +- this many sds
    fine_tune_lr: float = 3e-4
    fine_tune_epochs: int = 5
    device: str = "auto"
    progress: bool = False
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Unknown keys are dropped; missing ones take today's defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_checkpoint(cls, data: dict) -> TrainConfig:
        """Like ``from_dict``, but settings a stored model predates take the behaviour it was trained with."""
        return cls.from_dict({**LEGACY, **data})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def with_state(self) -> bool:
        return self.mode == "forecast"


# Settings that depend on the task (mode and time step), not on the data set: what ``smmdn backtest``
# starts from (``recommended_config``). Why, for daily simulation: the LSTM runs free from the start of the
# record at prediction time, so it trains on whole records too (chunks of up to a year from their first
# step, a month of spin-up without loss) and learns the trajectory of each series from its own start,
# instead of random half-year chunks that all look alike on a short record; a learnt vector per location
# lets one network-wide model fit each site's own response; three independently seeded members pooled
# into one mixture average out the seed noise of a small data set and add the spread between them
# (measured on USCRN 2020: docs/results.md). On a long record the validation window is its last quarter
# (at most a year): spread calibration and early stopping then see every season, not one summer (COSMOS-UK
# SPENF, four years: median 90 % coverage 0.83 with two months, 0.91 with a year). Hourly records are too
# long for whole-record chunks on a CPU:
# three-week chunks after a week of spin-up. The per-series mean corrections of ``model.levels`` stay off here:
# the one a pre-test fold favoured did not carry over to the test period (docs/results.md "The tail").
TASK_PRESETS: dict[tuple[str, bool], dict] = {
    ("simulation", True): {"seq_len": 365, "warmup": 30, "embedding_dim": 8, "hidden": 128, "members": 3,
                           "valid_fraction": 0.25},
    ("simulation", False): {"seq_len": 24 * 21, "warmup": 24 * 7, "valid_steps": 24 * 30},
    ("forecast", True): {},
    ("forecast", False): {"seq_len": 24 * 21, "warmup": 24 * 7, "valid_steps": 24 * 30},
}


def recommended_config(mode: str, daily: bool, **settings: object) -> TrainConfig:
    """``TrainConfig`` for a task: the preset of (mode, daily), then ``settings`` on top."""
    if mode not in ("simulation", "forecast"):
        raise ValueError(f"unknown mode {mode!r}: use simulation or forecast")
    values = {"mode": mode, **TASK_PRESETS[(mode, daily)], **settings}
    unknown = sorted(set(values) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
    return TrainConfig(**values)  # type: ignore[arg-type]


# settings older checkpoints lack, with the behaviour they were trained with
LEGACY = {"spread_per_series": False, "residual": False, "members": 1, "features": False, "p_hidden": 0.3,
          "p_long_cut": 1.0, "balance_regimes": False}


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA (bf16 autocast, fp32 head) when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def build_network(prep: Prepared, config: TrainConfig, n_locations: int) -> MixtureLSTM:
    n_dyn = prep.dynamic.shape[-1] + (n_state_channels(config.residual) if config.with_state else 0)
    net_cfg = NetworkConfig(
        n_dynamic=n_dyn, n_static=prep.static.shape[-1], hidden=config.hidden, layers=config.layers,
        dropout=config.dropout, components=config.components, forget_bias=config.forget_bias,
        n_locations=n_locations if config.embedding_dim > 0 else 0, embedding_dim=config.embedding_dim,
        zero_mean_init=config.with_state and config.residual,
    )
    return MixtureLSTM(net_cfg)


@dataclass
class Batch:
    """One batch of chunks: inputs, targets, loss mask, residual offset, and which steps run free."""

    dynamic: np.ndarray  # (B, T, C)
    targets: np.ndarray  # (B, T, R)
    mask: np.ndarray  # (B, T, R) observed and past the warm-up
    offset: np.ndarray | None  # (B, T) residual forecast mode: last visible observation
    free: np.ndarray | None  # (B, T) forecast mode: steps after the cut (the state hidden)


def _cuts(rng: np.random.Generator, n: int, length: int, config: TrainConfig) -> np.ndarray:
    """Last step with the state visible, per chunk.

    Most chunks are cut within two horizons of their end (the leads that are forecast); a share
    ``p_long_cut`` anywhere (long free runs keep the model sane when observations stop)."""
    near = length - 1 - rng.integers(0, max(2 * config.horizon, 1), size=n)
    anywhere = rng.integers(0, length, size=n)
    return np.where(rng.random(n) < config.p_long_cut, anywhere, np.maximum(near, 0))


def _batch(
    prep: Prepared, loc: np.ndarray, start: np.ndarray, config: TrainConfig, rng: np.random.Generator
) -> Batch:
    length = config.seq_len
    dyn = gather(prep.dynamic, loc, start, length)
    y = gather(prep.targets, loc, start, length)
    mask = ~np.isnan(y)
    mask[:, : config.warmup] = False
    if not config.with_state:
        return Batch(dyn, y, mask, None, None)
    st = gather(prep.state, loc, start, length)
    cut = _cuts(rng, len(loc), length, config)
    hidden_all = rng.random(len(loc)) < config.p_hidden
    free = (np.arange(length)[None, :] > cut[:, None]) | hidden_all[:, None]
    vis = ~np.isnan(st) & ~free & (rng.random(st.shape) >= config.obs_dropout)
    channels, offset = state_inputs(st, vis, config.residual)
    return Batch(np.concatenate([dyn, channels], -1), y, mask, offset, free)


def _loss(net: Network, prep: Prepared, loc: np.ndarray, batch: Batch, config: TrainConfig,
          device: torch.device) -> tuple[torch.Tensor, int]:
    """Mean NLL per observed step; in forecast mode the one-step-ahead steps (state visible) and the
    free-running steps (state hidden) each weigh one half, so the few forecast leads in a chunk are
    not drowned by its many one-step-ahead steps."""
    floor_z = torch.from_numpy((config.sigma_floor / prep.scale[loc]).astype(np.float32)).to(device)
    with _autocast(device):
        out = net(
            torch.from_numpy(batch.dynamic).to(device), torch.from_numpy(prep.static[loc]).to(device), floor_z,
            torch.from_numpy(prep.location_index[loc]).to(device),
            offset=None if batch.offset is None else torch.from_numpy(batch.offset).to(device),
        )
    yt = torch.from_numpy(np.nan_to_num(batch.targets)).to(device)
    params = (out["log_weights"], out["means"], out["sigmas"])
    if batch.free is None or not config.balance_regimes:
        total, count = torch_nll(yt, torch.from_numpy(batch.mask).to(device), *params)
        n = int(count.item())
        return total / max(n, 1), n
    masks = [m for m in (batch.mask & batch.free[..., None], batch.mask & ~batch.free[..., None]) if m.any()]
    totals, counts = torch_nll(yt, torch.from_numpy(batch.mask).to(device), *params,
                               groups=[torch.from_numpy(m).to(device) for m in masks])
    return (totals / counts).mean(), int(sum(int(m.sum()) for m in masks))


def validation_score(
    net: Network, prep: Prepared, locations: np.ndarray, v0: int, v1: int, config: TrainConfig,
    device: torch.device, spread: float | np.ndarray = 1.0,
) -> float:
    """Mean CRPS (model units) on steps ``[v0, v1)``: simulation, or forecast windows in forecast mode."""
    lw, mu, sg, y = _valid_predictions(net, prep, locations, v0, v1, config, device, spread)
    return _crps_mean(lw, mu, sg, y)


def _valid_predictions(
    net: Network, prep: Prepared, locations: np.ndarray, v0: int, v1: int, config: TrainConfig,
    device: torch.device, spread: float | np.ndarray = 1.0, with_rows: bool = False,
) -> tuple[np.ndarray, ...]:
    """Model-unit validation mixtures (n, T, K), targets (n, T, R) [and each row's location index]."""
    if config.with_state:
        issues_per = np.arange(v0 - 1, v1 - config.horizon, max(1, config.horizon // 2))
        locs = np.repeat(locations, len(issues_per))
        issues = np.tile(issues_per, len(locations))
        lw, mu, sg = forecast_issues(net, prep, locs, issues, config.horizon, config.seq_len, config.sigma_floor,
                                     device, spread, model_units=True, residual=config.residual)
        y = gather(prep.targets, locs, issues + 1, config.horizon)
    else:
        locs = np.asarray(locations)
        lw, mu, sg = simulate(net, prep, locs, v0, v1, config.seq_len, config.sigma_floor, device, False,
                              spread, model_units=True)
        y = prep.targets[locs, v0:v1]
    return (lw, mu, sg, y, locs) if with_rows else (lw, mu, sg, y)


def _crps_mean(lw: np.ndarray, mu: np.ndarray, sg: np.ndarray, y: np.ndarray) -> float:
    ok = ~np.isnan(y)
    if not ok.any():
        return float("nan")
    li = np.nonzero(ok)
    w = np.exp(lw[li[:-1]].astype(np.float64))
    return float(np.mean(mixture_crps(y[ok], w, mu[li[:-1]], sg[li[:-1]])))


def calibrate_spread(
    net: Network, prep: Prepared, locations: np.ndarray, v0: int, v1: int, config: TrainConfig,
    device: torch.device, keys: list[str] | None = None, steps_per_day: float = 1.0,
) -> Calibration:
    """Spread factors fitted on validation forecasts of steps ``[v0, v1)`` (see ``model.calibrate``):
    network-wide, per lead in forecast mode, per block of distance from the training end ``v0`` in
    simulation mode, and per location (``keys``: location keys of ``prep``) when
    ``config.spread_prior_steps`` is set."""
    lw, mu, sg, y, rows = _valid_predictions(net, prep, locations, v0, v1, config, device, with_rows=True)
    row_keys = [keys[i] for i in rows] if keys is not None else [str(i) for i in rows]
    prior = config.spread_prior_steps if keys is not None else None
    block = 0 if config.with_state else max(round(DISTANCE_BLOCK_DAYS * steps_per_day), 1)
    return fit_calibration(lw, mu, sg, y, row_keys, per_lead=config.with_state, prior_steps=prior,
                           per_series=config.spread_per_series, distance_block=block)


def train_network(
    prep: Prepared,
    train_locations: np.ndarray,
    t_lo: int,
    t_hi: int,
    config: TrainConfig,
    *,
    valid: tuple[int, int] | None = None,
    net: MixtureLSTM | None = None,
    lr: float | None = None,
    epochs: int | None = None,
    n_locations: int = 0,
) -> tuple[MixtureLSTM, dict]:
    """Train (or continue training ``net``) on steps ``[t_lo, t_hi)``; returns the best network.

    With ``valid`` the best epoch by validation CRPS is kept and training stops after ``patience``
    epochs without improvement. Raises ``ModelError`` on a non-finite loss or gradient.
    """
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    device = pick_device(config.device)
    net = (net or build_network(prep, config, n_locations)).to(device)
    n_epochs = epochs or config.max_epochs
    opt = torch.optim.AdamW(net.parameters(), lr=lr or config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(n_epochs, 1), eta_min=(lr or config.lr) * 0.05)
    seq = min(config.seq_len, t_hi - t_lo)
    cfg = copy.copy(config)
    cfg.seq_len, cfg.warmup = seq, min(config.warmup, max(seq // 3, 1))
    has_obs = np.array([np.isfinite(prep.targets[i, t_lo:t_hi]).any() for i in train_locations], dtype=bool)
    locs = train_locations[has_obs]
    if len(locs) == 0:
        raise ModelError("no training observations in the training window: nothing to learn from")
    history: dict = {"train_loss": [], "valid_crps": [], "best_epoch": 0, "sequences_per_s": None}
    best, best_state, stale = math.inf, copy.deepcopy(net.state_dict()), 0
    n_chunks = max(config.batch_size * 4, len(locs) * config.chunks_per_location)  # >= 4 steps/epoch

    seen, busy = 0, 0.0
    bar = tqdm(range(n_epochs), disable=not config.progress, desc="train", unit="epoch")
    for epoch in bar:
        net.train()
        loc_all, start_all = sample_chunks(rng, locs, t_lo, t_hi, seq, n_chunks)
        losses = []
        t0 = time.perf_counter()
        for i in range(0, n_chunks, config.batch_size):
            loc, start = loc_all[i : i + config.batch_size], start_all[i : i + config.batch_size]
            batch = _batch(prep, loc, start, cfg, rng)
            if not batch.mask.any():
                continue
            loss, _ = _loss(net, prep, loc, batch, cfg, device)
            if not torch.isfinite(loss):
                raise ModelError(f"non-finite training loss at epoch {epoch}: keep the previous model")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(net.parameters(), config.clip_norm)
            if not torch.isfinite(norm):
                raise ModelError(f"non-finite gradient at epoch {epoch}: keep the previous model")
            opt.step()
            losses.append(float(loss.item()))
            seen += len(loc)
        busy += time.perf_counter() - t0
        sched.step()
        history["train_loss"].append(float(np.mean(losses)) if losses else float("nan"))
        if valid is not None:
            score = validation_score(net, prep, train_locations, valid[0], valid[1], cfg, device)
            history["valid_crps"].append(score)
            bar.set_postfix(loss=history["train_loss"][-1], valid_crps=score)
            if score < best - 1e-5:
                best, best_state, stale = score, copy.deepcopy(net.state_dict()), 0
                history["best_epoch"] = epoch + 1
            else:
                stale += 1
                if stale >= config.patience and epoch + 1 >= config.min_epochs:
                    break
        else:
            bar.set_postfix(loss=history["train_loss"][-1])
            history["best_epoch"] = epoch + 1
    if valid is not None:
        net.load_state_dict(best_state)
    history["sequences_per_s"] = seen / busy if busy > 0 else None
    history["epochs_run"] = len(history["train_loss"])
    return net, history


MEMBER_SEED_STEP = 1009  # member m trains with seed + m * MEMBER_SEED_STEP


def train_members(
    prep: Prepared,
    train_locations: np.ndarray,
    t_lo: int,
    t_hi: int,
    config: TrainConfig,
    *,
    valid: tuple[int, int] | None = None,
    epochs: list[int] | None = None,
    n_locations: int = 0,
) -> tuple[Network, dict]:
    """Train ``config.members`` independently seeded networks; one member is returned as itself.

    ``epochs`` gives each member its own epoch count (a refit repeats each member's early-stopping
    choice). The history is the first member's, plus per-member best epochs and the mean throughput.
    """
    nets, hists = [], []
    for m in range(max(config.members, 1)):
        cfg = copy.copy(config)
        cfg.seed = config.seed + m * MEMBER_SEED_STEP
        net, hist = train_network(prep, train_locations, t_lo, t_hi, cfg, valid=valid,
                                  epochs=None if epochs is None else epochs[min(m, len(epochs) - 1)],
                                  n_locations=n_locations)
        nets.append(net)
        hists.append(hist)
    history = dict(hists[0])
    history["member_best_epochs"] = [h["best_epoch"] for h in hists]
    rates = [h["sequences_per_s"] for h in hists if h["sequences_per_s"]]
    history["sequences_per_s"] = float(np.mean(rates)) if rates else None
    history["epochs_run"] = int(sum(h["epochs_run"] for h in hists))
    return (nets[0] if len(nets) == 1 else MixtureEnsemble(nets)), history
