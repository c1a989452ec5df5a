"""Running a trained network and returning physical-unit mixtures.

Simulation: one pass per location from ``start - warmup`` to ``end`` (forcing only). Forecast: the
observed-state channel is visible up to the issue time and hidden for the leads, exactly as in
training; one visible pass per location, then a short branch per issue (``forecast_issues``).
"""

from __future__ import annotations

import numpy as np
import torch

from smmdn.model.data import Prepared
from smmdn.model.network import MixtureEnsemble, MixtureLSTM

Network = MixtureLSTM | MixtureEnsemble


def _autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


STATE_CHANNELS = 2  # observed value (0 where hidden) and its visibility mask
RESIDUAL_STATE_CHANNELS = 5  # + last visible value (forward-filled), "has one" flag, scaled age
AGE_SCALE = 5.0  # log1p(age in steps) / AGE_SCALE keeps the age channel of order one


def last_visible(values: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Along the last axis: last visible value (0 where none yet), has-one flag, steps since it."""
    t = np.arange(values.shape[-1])
    idx = np.maximum.accumulate(np.where(visible, t, -1), axis=-1)
    has = idx >= 0
    last = np.take_along_axis(np.nan_to_num(values), np.maximum(idx, 0), axis=-1)
    return np.where(has, last, 0.0), has, np.where(has, t - idx, 0)


def state_inputs(values: np.ndarray, visible: np.ndarray, residual: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(B, T) lagged observations + visibility -> state channels (B, T, C) and the residual offset.

    The offset (B, T) is the last visible observation (0 where none): in a residual model the head
    predicts the change from it, so a head that outputs zero change reproduces persistence.
    """
    value = np.where(visible, np.nan_to_num(values), 0.0)
    if not residual:
        return np.stack([value, visible], -1).astype(np.float32), None
    last, has, age = last_visible(values, visible)
    channels = np.stack([value, visible, last, has, np.log1p(age) / AGE_SCALE], -1).astype(np.float32)
    return channels, last.astype(np.float32)


def n_state_channels(residual: bool) -> int:
    return RESIDUAL_STATE_CHANNELS if residual else STATE_CHANNELS


@torch.no_grad()
def run_batches(
    net: Network,
    dynamic: np.ndarray,
    static: np.ndarray,
    floor_z: np.ndarray,
    location: np.ndarray,
    device: torch.device,
    offset: np.ndarray | None = None,
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
                offset=None if offset is None else torch.from_numpy(offset[sl]).to(device),
            )
        outs.append(tuple(out[k].float().cpu().numpy() for k in ("log_weights", "means", "sigmas")))
    if not outs:
        k = net.n_components
        empty = np.zeros((0, dynamic.shape[1], k), np.float32)
        return empty, empty, empty
    return tuple(np.concatenate([o[j] for o in outs]) for j in range(3))  # type: ignore[return-value]


def scale_spread(
    log_w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, factor: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Widen/narrow a mixture around its mean by ``factor`` (exact affine map; post-hoc calibration).

    ``factor`` is a scalar or an array broadcastable to the batch shape (e.g. one factor per lead)."""
    f = np.asarray(factor, dtype=np.float64)
    if np.all(f == 1.0):
        return log_w, mu, sigma
    f = f[..., None]
    w = np.exp(log_w)
    m = np.sum(w * mu, axis=-1, keepdims=True)
    return log_w, m + f * (mu - m), f * sigma


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
    net: Network,
    prep: Prepared,
    locations: np.ndarray,
    t_start: int,
    t_end: int,
    warmup: int,
    floor: float,
    device: torch.device,
    with_state: bool,
    spread: float | np.ndarray = 1.0,
    model_units: bool = False,
    residual: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Physical mixtures (n_loc, t_end - t_start, K) in simulation mode (no observations seen);
    ``spread`` is a scalar or ``(n_loc, 1)`` factors."""
    s0 = max(t_start - warmup, 0)
    dyn = prep.dynamic[locations, s0:t_end]
    offset = None
    if with_state:
        hidden = np.zeros(dyn.shape[:2], dtype=bool)
        channels, offset = state_inputs(np.zeros(dyn.shape[:2]), hidden, residual)
        dyn = np.concatenate([dyn, channels], -1)
    floor_z = floor / prep.scale[locations]
    lw, mu, sg = run_batches(net, dyn, prep.static[locations], floor_z, prep.location_index[locations], device,
                             offset)
    lw, mu, sg = (a[:, t_start - s0 :] for a in (lw, mu, sg))
    lw, mu, sg = scale_spread(lw, mu, sg, spread)
    if model_units:
        return lw, mu, sg
    return to_physical(lw, mu, sg, prep.loc[locations][:, None], prep.scale[locations][:, None], floor)


def _pad_time(dynamic: np.ndarray, state: np.ndarray, before: int, after: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad steps before the series start / past the forcing end as missing forcing and no observation."""
    if before <= 0 and after <= 0:
        return dynamic, state
    n_f = dynamic.shape[-1] // 2

    def filler(n: int) -> np.ndarray:
        return np.concatenate([np.zeros((len(dynamic), n, n_f)), np.ones((len(dynamic), n, n_f))], -1).astype(
            np.float32)

    dyn = np.concatenate([filler(max(before, 0)), dynamic, filler(max(after, 0))], 1)
    nan = np.full((len(state), 1), np.nan, np.float32)
    st = np.concatenate([np.repeat(nan, max(before, 0), 1), state, np.repeat(nan, max(after, 0), 1)], 1)
    return dyn, st


def _map_state(fn, state):
    if isinstance(state, list):
        return [_map_state(fn, s) for s in state]
    return tuple(fn(x) for x in state)


def _stack_states(states: list):
    first = states[0]
    if isinstance(first, list):
        return [_stack_states([s[i] for s in states]) for i in range(len(first))]
    return tuple(torch.stack([s[j] for s in states]) for j in range(len(first)))


def _branch_inputs(
    dyn: np.ndarray, st: np.ndarray, tf_last: tuple[np.ndarray, ...] | None, loc: np.ndarray, first: np.ndarray,
    length: int, residual: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs of the hidden-state steps ``first .. first + length - 1`` (local) of each branch.

    The residual channels carry on the last visible value of the issue's lead-1 step, its age growing."""
    steps = first[:, None] + np.arange(length)[None, :]
    hidden = np.zeros(steps.shape, dtype=bool)
    if tf_last is None:
        channels, offset = state_inputs(np.zeros(steps.shape), hidden, residual)
    else:
        at = (loc, first - 1)
        last = np.repeat(tf_last[0][at][:, None], length, 1)
        has = np.repeat(tf_last[1][at][:, None], length, 1)
        age = np.where(has, tf_last[2][at][:, None] + 1 + np.arange(length)[None, :], 0)
        zeros = np.zeros(steps.shape)
        channels = np.stack([zeros, hidden, last, has, np.log1p(age) / AGE_SCALE], -1).astype(np.float32)
        offset = last.astype(np.float32)
    return np.concatenate([dyn[loc[:, None], steps], channels], -1), offset


@torch.no_grad()
def forecast_issues(
    net: Network,
    prep: Prepared,
    locations: np.ndarray,
    issues: np.ndarray,
    horizon: int,
    warmup: int,
    floor: float,
    device: torch.device,
    spread: float | np.ndarray = 1.0,
    model_units: bool = False,
    residual: bool = False,
    batch: int = 2048,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mixtures for leads 1..horizon of each (location, issue index) pair, shaped (n, horizon, K).

    The lagged state at step t is the observation at t-1, so it is visible for steps ``<= issue + 1``
    (latest observation at the issue time) and hidden after — exactly the cut used in training.
    Why this shape: one pass per location with every observation visible (from ``warmup`` steps before
    the first issue) gives the LSTM state right after each issue's lead-1 step; each issue then
    branches off for leads 2..horizon with the state hidden. That costs (span + n * horizon) steps
    instead of one ``warmup``-long window per issue. ``spread``: a scalar or one factor per lead.
    """
    n = len(locations)
    k = net.n_components
    if n == 0:
        empty = np.zeros((0, horizon, k))
        return empty, empty, empty
    uniq, inv = np.unique(locations, return_inverse=True)
    i_min, i_max = int(issues.min()), int(issues.max())
    s0 = i_min + 1 - warmup  # may be negative: padded as missing
    t_stop = i_max + horizon + 1  # exclusive
    n_t = prep.dynamic.shape[1]
    lo, hi = max(s0, 0), min(t_stop, n_t)
    dyn, st = _pad_time(prep.dynamic[uniq, lo:hi], prep.state[uniq, lo:hi], lo - s0, t_stop - hi)
    rel = np.arange(t_stop - s0)  # local step index; absolute step = s0 + rel
    tf_visible = ~np.isnan(st) & ((s0 + rel) <= i_max + 1)[None, :]
    channels, offset = state_inputs(st, tf_visible, residual)
    static = torch.from_numpy(prep.static[uniq]).to(device)
    floor_u = torch.from_numpy((floor / prep.scale[uniq]).astype(np.float32)).to(device)
    loc_u = torch.from_numpy(prep.location_index[uniq]).to(device)
    x_tf = torch.from_numpy(np.concatenate([dyn, channels], -1)).to(device)
    off_tf = None if offset is None else torch.from_numpy(offset).to(device)
    net.eval()

    def step(a: int, b: int, state):
        with _autocast(device):
            out = net(x_tf[:, a:b], static, floor_u, loc_u, state=state,
                      offset=None if off_tf is None else off_tf[:, a:b])
        return out

    first = i_min + 1 - s0  # local index of the first issue's lead-1 step
    state = step(0, first, None)["state"] if first > 0 else None
    wanted = np.unique(issues)
    pos = {int(i): j for j, i in enumerate(wanted)}
    lead1 = {key: np.zeros((len(wanted), len(uniq), k), np.float32) for key in ("log_weights", "means", "sigmas")}
    snapshots = []
    for t in range(first, i_max + 2 - s0):
        out = step(t, t + 1, state)
        state = out["state"]
        issue = s0 + t - 1
        if issue in pos:
            for key in lead1:
                lead1[key][pos[issue]] = out[key][:, 0].float().cpu().numpy()
            snapshots.append(_map_state(lambda x: x.clone(), state))
    j_issue = np.array([pos[int(i)] for i in issues])
    lw = np.zeros((n, horizon, k), np.float32)
    mu, sg = np.zeros_like(lw), np.zeros_like(lw)
    lw[:, 0], mu[:, 0], sg[:, 0] = (lead1[key][j_issue, inv] for key in ("log_weights", "means", "sigmas"))
    if horizon > 1:
        stacked = _stack_states(snapshots)  # each tensor (issues, layers, locations, hidden)
        tf_last = last_visible(st, tf_visible) if residual else None
        for a in range(0, n, batch):
            sl = slice(a, a + batch)
            x_b, off_b = _branch_inputs(dyn, st, tf_last, inv[sl], issues[sl] + 2 - s0, horizon - 1, residual)
            ji, li = torch.from_numpy(j_issue[sl]), torch.from_numpy(inv[sl])
            st_b = _map_state(lambda x, ji=ji, li=li: x[ji, :, li].permute(1, 0, 2).contiguous(), stacked)
            with _autocast(device):
                out = net(torch.from_numpy(x_b).to(device), static[li], floor_u[li], loc_u[li], state=st_b,
                          offset=None if off_b is None else torch.from_numpy(off_b).to(device))
            lw[sl, 1:], mu[sl, 1:], sg[sl, 1:] = (out[key].float().cpu().numpy()
                                                  for key in ("log_weights", "means", "sigmas"))
    f = np.asarray(spread, dtype=np.float64)
    if f.ndim:  # factors per lead (last axis; the last one carries on) [and per pair]
        f = np.concatenate([f, np.repeat(f[..., -1:], max(horizon - f.shape[-1], 0), -1)], -1)[..., :horizon]
    lw, mu, sg = scale_spread(lw, mu, sg, f)
    if model_units:
        return lw, mu, sg
    return to_physical(lw, mu, sg, prep.loc[locations][:, None], prep.scale[locations][:, None], floor)
