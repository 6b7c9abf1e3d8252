"""benchmarks/olora_forgetting.py: the subspace overlap it reports, on cases whose answer is known, and
how it groups a checkpoint's modules."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "olora_forgetting.py"


def load():
    spec = importlib.util.spec_from_file_location("bench_olora_forgetting", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_overlap_is_one_inside_the_old_span_zero_orthogonal_to_it_and_the_energy_share_between():
    bench = load()
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))  # orthonormal columns
    old = torch.randn(6, 6, generator=g) @ basis[:, :6].t()  # (6, 16): rows span a 6-d subspace, not orthonormal
    inside = torch.randn(3, 6, generator=g) @ old
    outside = torch.randn(3, 10, generator=g) @ basis[:, 6:].t()
    assert math.isclose(bench.subspace_overlap(old, inside), 1.0, abs_tol=1e-6)
    assert bench.subspace_overlap(old, outside) < 1e-9
    half = torch.cat([basis[:, :1], basis[:, 8:9]], dim=1).t()  # one direction inside, one outside, equal energy
    assert math.isclose(bench.subspace_overlap(old, half), 0.5, abs_tol=1e-6)
    # a full-rank old set leaves no room: every new direction is inside
    assert math.isclose(bench.subspace_overlap(basis.t(), outside), 1.0, abs_tol=1e-6)


def test_groups_are_read_from_module_names():
    bench = load()
    assert bench._group("model.lm_head") == "lm_head"
    assert bench._group("model.model.embed_tokens") == "embed_tokens"
    assert bench._group("model.model.layers.3.self_attn.v_proj") == "attention"
    assert bench._group("model.model.layers.3.mlp.up_proj") is None
