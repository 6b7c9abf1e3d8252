"""Compute precision: bf16 autocast where the hardware has bf16 units, float32 elsewhere.

    with autocast(resolve_precision("auto", device), device):   # training steps, decoding
        loss = model(batch)["loss"]

`auto` means bf16 on a CUDA GPU that supports it and on a CPU with AMX-BF16 or AVX512-BF16 (read from
/proc/cpuinfo's flags), float32 otherwise: on a CPU without those units bf16 matmuls are emulated and
slower than float32. Weights stay as loaded (`lm.dtype`); autocast runs matrix products in bf16 and
keeps reductions (softmax, losses, norms) in float32. `machine()` names what a timing ran on.

Attention on a CPU runs in float32 even under bf16 autocast (`sdpa`, and the `CPU_ATTENTION`
implementation `use_cpu_attention` gives a Hugging Face model): PyTorch's CPU flash-attention kernel
is ~5x slower in bf16 than in float32 in the backward pass (default profile, Xeon with AMX-BF16:
133 ms against 25 ms per training step), while its bf16 forward is the faster one: so only where
gradients are recorded. Float32 inputs pass through unchanged (float32 runs are bit-identical).
"""

from __future__ import annotations

import contextlib
import os
import platform
from functools import lru_cache

import torch
import torch.nn.functional as F

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
PRECISIONS = ("auto", "bf16", "fp32")


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """(CPU model name, flags) from /proc/cpuinfo ('' and no flags where it cannot be read)."""
    name, flags = platform.processor() or platform.machine(), frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and value.strip():
                    name = value.strip()
                elif key == "flags" and not flags:
                    flags = frozenset(value.split())
    except OSError:
        pass
    return name, flags


def cpu_bf16_flags() -> list[str]:
    """The bf16 instruction sets this CPU has, of AMX-BF16 and AVX512-BF16."""
    return [f for f in BF16_CPU_FLAGS if f in _cpuinfo()[1]]


def bf16_available(device: torch.device | str = "cpu") -> bool:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(cpu_bf16_flags())


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """`auto` -> `bf16` where `bf16_available`, else `fp32`; `bf16` / `fp32` are kept."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_available(device) else "fp32"
    return precision


def autocast(precision: str, device: torch.device | str = "cpu") -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` for `precision` (auto / bf16 / fp32), or nothing."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def machine() -> dict[str, object]:
    """What a timing ran on: CPU model, its bf16 flags, torch threads, load average, cores."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpu": _cpuinfo()[0], "flags_bf16": cpu_bf16_flags(), "threads": torch.get_num_threads(),
            "cores": os.cpu_count(), "load": [round(x, 2) for x in load],
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


CPU_ATTENTION = "l2emg_sdpa"


def _fp32_attention(*tensors: torch.Tensor) -> bool:
    """Whether attention on these inputs should run in float32: on a CPU, while gradients are recorded,
    with bf16 inputs or under bf16 autocast (which would cast float32 inputs down)."""
    if tensors[0].device.type != "cpu" or not torch.is_grad_enabled():
        return False
    autocast_bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    return autocast_bf16 or any(t.dtype == torch.bfloat16 for t in tensors)


def _float32(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None):
    """query, key, value and a float mask in float32 (a boolean mask as it is)."""
    if mask is not None and mask.is_floating_point():
        mask = mask.float()
    return query.float(), key.float(), value.float(), mask


def sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, **kwargs) -> torch.Tensor:
    """`F.scaled_dot_product_attention`, computed in float32 when bf16 inputs are on a CPU."""
    if not _fp32_attention(query, key, value):
        return F.scaled_dot_product_attention(query, key, value, **kwargs)
    *qkv, kwargs["attn_mask"] = _float32(query, key, value, kwargs.get("attn_mask"))
    with torch.autocast("cpu", enabled=False):
        out = F.scaled_dot_product_attention(*qkv, **kwargs)
    return out.to(value.dtype)


def _hf_cpu_attention(module, query, key, value, attention_mask, **kwargs):
    """Hugging Face's sdpa attention, in float32 for bf16 inputs on a CPU (see `sdpa`)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not _fp32_attention(query, key, value):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    with torch.autocast("cpu", enabled=False):
        out, weights = sdpa_attention_forward(module, *_float32(query, key, value, attention_mask), **kwargs)
    return out.to(value.dtype), weights


def use_cpu_attention(model: torch.nn.Module) -> torch.nn.Module:
    """Give a Hugging Face model that uses sdpa attention the `CPU_ATTENTION` implementation (float32
    attention for bf16 inputs on a CPU, sdpa otherwise); other implementations are left alone."""
    from transformers import AttentionInterface

    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) not in ("sdpa", CPU_ATTENTION):
        return model
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(CPU_ATTENTION, _hf_cpu_attention)
    AttentionMaskInterface.register(CPU_ATTENTION, sdpa_mask)  # the masks sdpa gets
    model.set_attn_implementation(CPU_ATTENTION)
    return model
