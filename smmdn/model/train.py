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
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from tqdm.auto import tqdm

from smmdn.errors import ModelError
from smmdn.model.data import Prepared, gather, sample_chunks
from smmdn.model.mixture import DEFAULT_SIGMA_FLOOR, mixture_crps, torch_nll
from smmdn.model.network import MixtureLSTM, NetworkConfig
from smmdn.model.predict import _autocast, forecast_windows, simulate, state_channels

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
    valid_steps: int = 62  # length of the validation window just before the training end
    min_train_obs: int = 30  # locations with fewer training observations count as ungauged
    sd_floor: float = 0.01  # smallest per-location sd used for standardising (m3/m3)
    calibrate: bool = True  # fit a spread factor on the validation window
    refit: bool = True  # after choosing epochs/spread, retrain on train + validation data
    p_hidden: float = 0.3  # forecast mode: share of chunks with the state fully hidden
    obs_dropout: float = 0.1  # forecast mode: share of single observations hidden
    horizon: int = 7  # forecast mode: leads used for validation
    fine_tune_lr: float = 3e-4
    fine_tune_epochs: int = 5
    device: str = "auto"
    progress: bool = False
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def with_state(self) -> bool:
        return self.mode == "forecast"


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
    n_dyn = prep.dynamic.shape[-1] + (2 if config.with_state else 0)
    net_cfg = NetworkConfig(
        n_dynamic=n_dyn, n_static=prep.static.shape[-1], hidden=config.hidden, layers=config.layers,
        dropout=config.dropout, components=config.components, forget_bias=config.forget_bias,
        n_locations=n_locations if config.embedding_dim > 0 else 0, embedding_dim=config.embedding_dim,
    )
    return MixtureLSTM(net_cfg)


def _batch(
    prep: Prepared, loc: np.ndarray, start: np.ndarray, config: TrainConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    length = config.seq_len
    dyn = gather(prep.dynamic, loc, start, length)
    y = gather(prep.targets, loc, start, length)
    mask = ~np.isnan(y)
    mask[:, : config.warmup] = False
    if config.with_state:
        st = gather(prep.state, loc, start, length)
        cut = rng.integers(0, length, size=len(loc))
        hidden_all = rng.random(len(loc)) < config.p_hidden
        vis = (
            ~np.isnan(st)
            & (np.arange(length)[None, :] <= cut[:, None])
            & ~hidden_all[:, None]
            & (rng.random(st.shape) >= config.obs_dropout)
        )
        dyn = np.concatenate([dyn, state_channels(st, vis)], -1)
    return dyn, y, mask


def _loss(net: MixtureLSTM, prep: Prepared, loc: np.ndarray, dyn: np.ndarray, y: np.ndarray, mask: np.ndarray,
          config: TrainConfig, device: torch.device) -> tuple[torch.Tensor, int]:
    floor_z = torch.from_numpy((config.sigma_floor / prep.scale[loc]).astype(np.float32)).to(device)
    with _autocast(device):
        out = net(
            torch.from_numpy(dyn).to(device), torch.from_numpy(prep.static[loc]).to(device), floor_z,
            torch.from_numpy(prep.location_index[loc]).to(device),
        )
    yt = torch.from_numpy(np.nan_to_num(y)).to(device)
    mt = torch.from_numpy(mask).to(device)
    total, count = torch_nll(yt, mt, out["log_weights"], out["means"], out["sigmas"])
    n = int(count.item())
    return total / max(n, 1), n


def validation_score(
    net: MixtureLSTM, prep: Prepared, locations: np.ndarray, v0: int, v1: int, config: TrainConfig,
    device: torch.device, spread: float = 1.0,
) -> float:
    """Mean CRPS (model units) on steps ``[v0, v1)``: simulation, or forecast windows in forecast mode."""
    lw, mu, sg, y = _valid_predictions(net, prep, locations, v0, v1, config, device, spread)
    return _crps_mean(lw, mu, sg, y)


def _valid_predictions(
    net: MixtureLSTM, prep: Prepared, locations: np.ndarray, v0: int, v1: int, config: TrainConfig,
    device: torch.device, spread: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if config.with_state:
        issues_per = np.arange(v0 - 1, v1 - config.horizon, max(1, config.horizon // 2))
        locs = np.repeat(locations, len(issues_per))
        issues = np.tile(issues_per, len(locations))
        lw, mu, sg = forecast_windows(net, prep, locs, issues, config.horizon, config.seq_len, config.sigma_floor,
                                      device, spread, model_units=True)
        y = gather(prep.targets, locs, issues + 1, config.horizon)
        return lw, mu, sg, y
    lw, mu, sg = simulate(net, prep, locations, v0, v1, config.seq_len, config.sigma_floor, device, False, spread,
                          model_units=True)
    return lw, mu, sg, prep.targets[locations, v0:v1]


def _crps_mean(lw: np.ndarray, mu: np.ndarray, sg: np.ndarray, y: np.ndarray) -> float:
    ok = ~np.isnan(y)
    if not ok.any():
        return float("nan")
    li = np.nonzero(ok)
    w = np.exp(lw[li[:-1]].astype(np.float64))
    return float(np.mean(mixture_crps(y[ok], w, mu[li[:-1]], sg[li[:-1]])))


def calibrate_spread(
    net: MixtureLSTM, prep: Prepared, locations: np.ndarray, v0: int, v1: int, config: TrainConfig,
    device: torch.device,
) -> float:
    """Spread factor (0.5..4) minimising validation CRPS: corrects over-/under-confidence post hoc."""
    lw, mu, sg, y = _valid_predictions(net, prep, locations, v0, v1, config, device)
    ok = ~np.isnan(y)
    if ok.sum() < 20:
        return 1.0
    li = np.nonzero(ok)
    w = np.exp(lw[li[:-1]].astype(np.float64))
    m, s, yy = mu[li[:-1]].astype(np.float64), sg[li[:-1]].astype(np.float64), y[ok]
    centre = np.sum(w * m, -1, keepdims=True)
    grid = np.exp(np.linspace(np.log(0.5), np.log(4.0), 43))
    scores = [np.mean(mixture_crps(yy, w, centre + f * (m - centre), f * s)) for f in grid]
    return float(grid[int(np.argmin(scores))])


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
            dyn, y, mask = _batch(prep, loc, start, cfg, rng)
            if not mask.any():
                continue
            loss, _ = _loss(net, prep, loc, dyn, y, mask, cfg, device)
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
