"""The machine a timing or a training run happened on: processor, cores, threads, versions.

Training and benchmarks record it beside their numbers, and the trainer asks it whether
the processor computes in bfloat16 natively (AVX512-BF16 or AMX), where autocast to
bfloat16 makes the transformer's matrix products cheaper at no cost in accuracy.
"""
from __future__ import annotations

import os
import platform

import numpy as np
import torch


def cpu_flags() -> set:
    """The processor's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(ln.split(":", 1)[1].split()) for ln in f if ln.startswith("flags")), set())
    except OSError:
        return set()


def cpu_has_bf16() -> bool:
    """Whether the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); without it, bf16 is emulated and slower."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def machine_info() -> dict:
    """The facts a timing needs beside it: processor, cores, threads, versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    blas = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default"
    return {"cpu": cpu, "cores": cores, "torch_threads": torch.get_num_threads(), "blas_threads": blas,
            "bf16": cpu_has_bf16(), "python": platform.python_version(),
            "torch": str(torch.__version__), "numpy": np.__version__, "platform": platform.platform()}


def machine() -> str:
    """`machine_info` in one line, for a report."""
    m = machine_info()
    return (f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['torch_threads']} threads, "
            f"Python {m['python']}, {platform.system()}")
