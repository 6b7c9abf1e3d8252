"""Compute precision: bf16 autocast where the hardware has bf16 units, float32 elsewhere.

    with autocast(resolve_precision("auto", device), device):   # training steps, decoding
        loss = model(batch)["loss"]

`auto` means bf16 on a CUDA GPU that supports it and on a CPU with AMX-BF16 or AVX512-BF16 (read from
/proc/cpuinfo's flags), float32 otherwise: on a CPU without those units bf16 matmuls are emulated and
slower than float32. Weights stay as loaded (`lm.dtype`); autocast runs matrix products in bf16 and
keeps reductions (softmax, losses, norms) in float32. `machine()` names what a timing ran on.
"""

from __future__ import annotations

import contextlib
import os
import platform
from functools import lru_cache

import torch

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
