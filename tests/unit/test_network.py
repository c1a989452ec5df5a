"""Shapes and constraints of the network and its mixture head."""

from __future__ import annotations

import torch

from smmdn.model.network import MixtureHead, MixtureLSTM, NetworkConfig


def _net(**kw: object) -> MixtureLSTM:
    return MixtureLSTM(NetworkConfig(n_dynamic=5, n_static=3, hidden=8, components=3, **kw))


def test_head_shapes_weights_and_sigma_floor() -> None:
    head = MixtureHead(8, 4, weight_floor=1e-3)
    out = head(torch.randn(2, 7, 8) * 50, sigma_floor=0.1)
    for key in ("log_weights", "means", "sigmas"):
        assert out[key].shape == (2, 7, 4)
    w = out["log_weights"].exp()
    assert torch.allclose(w.sum(-1), torch.ones(2, 7), atol=1e-5)
    assert (w >= 1e-3 - 1e-7).all()  # weight floor
    assert (out["sigmas"] >= 0.1).all()  # sigma floor


def test_network_forward_shapes_and_per_series_floor() -> None:
    net = _net()
    floor = torch.tensor([0.5, 0.01])
    out = net(torch.randn(2, 11, 5), torch.randn(2, 3), floor)
    assert out["means"].shape == (2, 11, 3)
    assert (out["sigmas"][0] >= 0.5).all() and (out["sigmas"][1] >= 0.01).all()


def test_forget_gate_bias_initialised() -> None:
    net = _net(forget_bias=3.0)
    b = net.lstm.bias_ih_l0.detach()
    assert torch.all(b[8:16] == 3.0)


def test_head_runs_in_fp32_under_autocast() -> None:
    """bf16 hidden states in (as the LSTM gives them under CUDA autocast), fp32 mixture out."""
    head = MixtureHead(8, 3, weight_floor=1e-4)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        assert torch.nn.Linear(8, 2)(torch.randn(1, 8)).dtype == torch.bfloat16  # autocast is active
        out = head(torch.randn(2, 4, 8).bfloat16(), 0.01)
    assert out["log_weights"].dtype == torch.float32
    assert out["sigmas"].dtype == torch.float32


def test_embedding_unknown_location_is_zero_vector() -> None:
    net = _net(n_locations=3, embedding_dim=4)
    assert torch.all(net.embedding.weight[0] == 0)
    out = net(torch.randn(2, 4, 5), torch.randn(2, 3), 0.01, location=torch.tensor([0, 2]))
    assert out["means"].shape == (2, 4, 3)
