"""LSTM with a Gaussian-mixture head (Bischof et al. 2025): one mixture per series and time step.

The network is pure: tensors in, a dict of mixture parameters out. Scaling, windows and the
transformation back to physical units live in ``smmdn.model.data``; the loss in ``mixture``.

Inputs per step are the dynamic forcing (plus missing-indicator channels and, in forecast mode, the
observed-state channel with its mask) concatenated with the static attributes of the series.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from smmdn.model.mixture import DEFAULT_WEIGHT_FLOOR


@dataclass
class NetworkConfig:
    """Architecture; stored as plain JSON in every checkpoint."""

    n_dynamic: int
    n_static: int
    hidden: int = 64
    layers: int = 1
    dropout: float = 0.4
    components: int = 3
    forget_bias: float = 3.0
    weight_floor: float = DEFAULT_WEIGHT_FLOOR
    n_locations: int = 0  # > 0: a learnt embedding per training location (ungauged -> zero vector)
    embedding_dim: int = 0
    zero_mean_init: bool = False  # residual forecast: the head starts predicting zero change
    members: int = 1  # > 1: an equal-weight ensemble of independently trained networks (K * members)

    def to_dict(self) -> dict:
        return asdict(self)


class MixtureHead(nn.Module):
    """Linear map to ``3K`` numbers -> log-weights (log_softmax + floor), means, sigmas (softplus + floor).

    Runs in fp32 even under autocast: exp/log of bf16 logits lose the tails of the likelihood.
    """

    def __init__(self, hidden: int, components: int, weight_floor: float) -> None:
        super().__init__()
        self.k = components
        self.weight_floor = weight_floor
        self.linear = nn.Linear(hidden, 3 * components)

    def forward(self, h: torch.Tensor, sigma_floor: torch.Tensor | float) -> dict[str, torch.Tensor]:
        with torch.autocast(device_type=h.device.type, enabled=False):
            out = self.linear(h.float())
            logits, mu, raw_sigma = out.split(self.k, dim=-1)
            log_w = torch.log_softmax(logits, dim=-1)
            if self.weight_floor > 0 and self.k > 1:
                eps = self.weight_floor  # w' = w (1 - K eps) + eps, in log space
                log_w = torch.logaddexp(log_w + math.log1p(-self.k * eps), torch.full_like(log_w, math.log(eps)))
            floor = sigma_floor if isinstance(sigma_floor, float) else sigma_floor.float()
            sigma = F.softplus(raw_sigma) + floor
        return {"log_weights": log_w, "means": mu, "sigmas": sigma}


class MixtureLSTM(nn.Module):
    """LSTM over ``[dynamic, static, embedding]`` per step, mixture head per step."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        emb = config.embedding_dim if config.n_locations > 0 else 0
        self.embedding = nn.Embedding(config.n_locations + 1, emb, padding_idx=0) if emb else None
        n_in = config.n_dynamic + config.n_static + emb
        self.lstm = nn.LSTM(
            n_in, config.hidden, num_layers=config.layers, batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = MixtureHead(config.hidden, config.components, config.weight_floor)
        self._init_forget_bias(config.forget_bias)
        if config.zero_mean_init:
            self._zero_mean_rows()

    def _zero_mean_rows(self) -> None:
        """Residual forecast: start from zero predicted change, i.e. exactly persistence."""
        k = self.config.components
        with torch.no_grad():
            self.head.linear.weight[k : 2 * k].zero_()
            self.head.linear.bias[k : 2 * k].zero_()

    def _init_forget_bias(self, value: float) -> None:
        """A high forget-gate bias keeps the cell state (soil memory) from the first update on."""
        h = self.config.hidden
        for name, param in self.lstm.named_parameters():
            if name.startswith("bias_ih"):
                with torch.no_grad():
                    param[h : 2 * h].fill_(value)
            elif name.startswith("bias_hh"):
                with torch.no_grad():
                    param[h : 2 * h].fill_(0.0)

    def forward(
        self,
        dynamic: torch.Tensor,
        static: torch.Tensor,
        sigma_floor: torch.Tensor | float,
        location: torch.Tensor | None = None,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        offset: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``dynamic`` (B, T, F), ``static`` (B, S), ``sigma_floor`` scalar or (B,) in model units,
        ``location`` (B,) indices (0 = unknown), ``offset`` (B, T) added to every component mean (the
        residual forecast: the head predicts the change from the last observed state). Returns
        log_weights/means/sigmas shaped (B, T, K) and the LSTM ``state`` after the last step."""
        b, t, _ = dynamic.shape
        parts = [dynamic, static.unsqueeze(1).expand(b, t, static.shape[-1])]
        if self.embedding is not None:
            idx = location if location is not None else torch.zeros(b, dtype=torch.long, device=dynamic.device)
            parts.append(self.embedding(idx).unsqueeze(1).expand(b, t, -1))
        x = torch.cat(parts, dim=-1)
        h, new_state = self.lstm(x, state)
        h = self.dropout(h)
        floor = sigma_floor if isinstance(sigma_floor, float) else sigma_floor.view(b, 1, 1)
        out = self.head(h, floor)
        if offset is not None:
            out["means"] = out["means"] + offset.float().unsqueeze(-1)
        out["state"] = new_state  # type: ignore[assignment]
        return out

    @property
    def n_components(self) -> int:
        return self.config.components


class MixtureEnsemble(nn.Module):
    """Equal-weight pool of independently trained members: a mixture of their mixtures (K * M components).

    Why: members disagree where the data do not pin the answer down (epistemic spread), which a single
    network's mixture, fitted to the training residuals, cannot show; pooling keeps a Gaussian mixture.
    Same call signature as ``MixtureLSTM``; ``state`` is a list with one LSTM state per member.
    """

    def __init__(self, members: list[MixtureLSTM]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.config = replace(members[0].config, members=len(members))

    def forward(
        self,
        dynamic: torch.Tensor,
        static: torch.Tensor,
        sigma_floor: torch.Tensor | float,
        location: torch.Tensor | None = None,
        state: list | None = None,
        offset: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        outs = [m(dynamic, static, sigma_floor, location, None if state is None else state[i], offset)
                for i, m in enumerate(self.members)]
        log_m = math.log(len(outs))
        return {
            "log_weights": torch.cat([o["log_weights"] - log_m for o in outs], dim=-1),
            "means": torch.cat([o["means"] for o in outs], dim=-1),
            "sigmas": torch.cat([o["sigmas"] for o in outs], dim=-1),
            "state": [o["state"] for o in outs],  # type: ignore[dict-item]
        }

    @property
    def n_components(self) -> int:
        return self.config.components * len(self.members)


def build_network(config: NetworkConfig) -> MixtureLSTM | MixtureEnsemble:
    """The module a stored ``NetworkConfig`` describes (members > 1: an ensemble of identical members)."""
    if config.members > 1:
        return MixtureEnsemble([MixtureLSTM(replace(config, members=1)) for _ in range(config.members)])
    return MixtureLSTM(config)
