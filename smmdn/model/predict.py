"""Running a trained network over windows and returning physical-unit mixtures.

Simulation: one pass per location from ``start - warmup`` to ``end`` (forcing only). Forecast: one
window per (location, issue time) ending at ``issue + horizon``; the observed-state channel is visible
up to the issue time and hidden for the leads, exactly as in training.
"""

from __future__ import annotations

import numpy as np
import torch

from smmdn.model.data import Prepared, gather
from smmdn.model.network import MixtureLSTM


def _autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def state_channels(values: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """(B, T) lagged observations + visibility -> (B, T, 2) [value or 0, mask]."""
    return np.stack([np.where(visible, np.nan_to_num(values), 0.0), visible.astype(np.float32)], -1).astype(
        np.float32
    )


@torch.no_grad()
def run_batches(
    net: MixtureLSTM,
    dynamic: np.ndarray,
    static: np.ndarray,
    floor_z: np.ndarray,
    location: np.ndarray,
    device: torch.device,
    batch: int = 1024,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model-unit mixture (log_w, mu, sigma), each (B, T, K), for pre-assembled inputs."""
    net.eval()
    outs: list[tuple[np.ndarray, ...]] = []
    for i in range(0, len(dynamic), batch):
        sl = slice(i, i + batch)
        with _autocast(device):
            out = net(
                torch.from_numpy(dynamic[sl]).to(device), torch.from_numpy(static[sl]).to(device),
                torch.from_numpy(floor_z[sl].astype(np.float32)).to(device),
                torch.from_numpy(location[sl]).to(device),
            )
        outs.append(tuple(out[k].float().cpu().numpy() for k in ("log_weights", "means", "sigmas")))
    if not outs:
        k = net.config.components
        empty = np.zeros((0, dynamic.shape[1], k), np.float32)
        return empty, empty, empty
    return tuple(np.concatenate([o[j] for o in outs]) for j in range(3))  # type: ignore[return-value]


def scale_spread(
    log_w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, factor: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Widen/narrow a mixture around its mean by ``factor`` (exact affine map; post-hoc calibration)."""
    if factor == 1.0:
        return log_w, mu, sigma
    w = np.exp(log_w)
    m = np.sum(w * mu, axis=-1, keepdims=True)
    return log_w, m + factor * (mu - m), factor * sigma


def to_physical(
    log_w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, loc: np.ndarray, scale: np.ndarray, floor: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model units -> m3/m3: ``loc + scale * Y`` per location (loc/scale shaped like the batch)."""
    w = np.exp(log_w.astype(np.float64))
    w = w / w.sum(-1, keepdims=True)
    mu_p = loc[..., None] + scale[..., None] * mu
    sig_p = np.maximum(scale[..., None] * sigma, floor)
    return w, mu_p, sig_p


def simulate(
    net: MixtureLSTM,
    prep: Prepared,
    locations: np.ndarray,
    t_start: int,
    t_end: int,
    warmup: int,
    floor: float,
    device: torch.device,
    with_state: bool,
    spread: float = 1.0,
    model_units: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Physical mixtures (n_loc, t_end - t_start, K) in simulation mode (no observations seen)."""
    s0 = max(t_start - warmup, 0)
    dyn = prep.dynamic[locations, s0:t_end]
    if with_state:
        hidden = np.zeros(dyn.shape[:2], dtype=bool)
        dyn = np.concatenate([dyn, state_channels(np.zeros(dyn.shape[:2]), hidden)], -1)
    floor_z = floor / prep.scale[locations]
    lw, mu, sg = run_batches(net, dyn, prep.static[locations], floor_z, prep.location_index[locations], device)
    lw, mu, sg = (a[:, t_start - s0 :] for a in (lw, mu, sg))
    lw, mu, sg = scale_spread(lw, mu, sg, spread)
    if model_units:
        return lw, mu, sg
    return to_physical(lw, mu, sg, prep.loc[locations][:, None], prep.scale[locations][:, None], floor)


def forecast_windows(
    net: MixtureLSTM,
    prep: Prepared,
    locations: np.ndarray,
    issues: np.ndarray,
    horizon: int,
    window: int,
    floor: float,
    device: torch.device,
    spread: float = 1.0,
    model_units: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mixtures for leads 1..horizon of each (location, issue index) pair, shaped (n, horizon, K).

    The window covers steps ``issue + horizon - window + 1 .. issue + horizon``; steps before the
    series start are padded as missing forcing. The lagged state at step t is the observation at t-1,
    so it is visible for steps ``<= issue + 1`` (latest observation at the issue time) and hidden after.
    """
    length = max(window, horizon + 1)
    start = issues + horizon - length + 1
    pad = int(max(0, -start.min())) if len(start) else 0
    dyn_all, state_all = prep.dynamic, prep.state
    if pad:
        n_f = dyn_all.shape[-1] // 2
        filler = np.concatenate([np.zeros((len(dyn_all), pad, n_f)), np.ones((len(dyn_all), pad, n_f))], -1)
        dyn_all = np.concatenate([filler.astype(np.float32), dyn_all], 1)
        state_all = np.concatenate([np.full((len(state_all), pad), np.nan, np.float32), state_all], 1)
    s = start + pad
    pad_end = int(max(0, (s.max() + length) - dyn_all.shape[1])) if len(s) else 0
    if pad_end:  # leads past the forcing's end: missing forcing, outputs there are not used
        n_f = dyn_all.shape[-1] // 2
        filler = np.concatenate([np.zeros((len(dyn_all), pad_end, n_f)), np.ones((len(dyn_all), pad_end, n_f))], -1)
        dyn_all = np.concatenate([dyn_all, filler.astype(np.float32)], 1)
        state_all = np.concatenate([state_all, np.full((len(state_all), pad_end), np.nan, np.float32)], 1)
    dyn = gather(dyn_all, locations, s, length)
    st = gather(state_all, locations, s, length)
    step_time = s[:, None] + np.arange(length)[None, :] - pad
    visible = ~np.isnan(st) & (step_time <= (issues + 1)[:, None])
    dyn = np.concatenate([dyn, state_channels(st, visible)], -1)
    floor_z = floor / prep.scale[locations]
    lw, mu, sg = run_batches(net, dyn, prep.static[locations], floor_z, prep.location_index[locations], device)
    lw, mu, sg = (a[:, -horizon:] for a in (lw, mu, sg))
    lw, mu, sg = scale_spread(lw, mu, sg, spread)
    if model_units:
        return lw, mu, sg
    return to_physical(lw, mu, sg, prep.loc[locations][:, None], prep.scale[locations][:, None], floor)
