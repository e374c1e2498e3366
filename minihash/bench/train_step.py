"""`minihash bench-train`: what a training step costs on this machine, and where the time goes.

A training step of the transformer is mostly not the transformer: cutting the windows,
distorting them (noise, FFT reverb), the log-mel of both views, then the network and
the optimiser. This measures the step of `minihash train` as it runs, for the options
that change its cost: bfloat16 autocast (`--precision`), pair production in a DataLoader
worker beside the model step (`--workers`), the convolutional stem (`--stem conv`) and
SpecAugment masks (`--masks`); and the pairs alone, for the share of the step they take.

Where the processor has no native bfloat16 (no AVX512-BF16 or AMX), autocast to bfloat16 is
emulated and about ten times slower than float32, so the bf16 rows are left out unless asked.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm

from ..distort import DistortConfig, Distorter
from ..encoder import ModelConfig
from ..machine import cpu_has_bf16
from ..modelfile import build_model
from ..pairs import make_loader
from ..recipe import LossConfig, fingerprint_loss
from ..spectrogram import MaskConfig
from ..train import TrainConfig, Trainer


@dataclass
class StepVariant:
    name: str
    stem: str = "patch"
    log: str = "log"
    precision: str = "fp32"
    workers: int = 0
    masks: float = 0.0


VARIANTS = (StepVariant("as shipped (fp32)"), StepVariant("fp32 + 1 pair worker", workers=1),
            StepVariant("bf16 autocast", precision="bf16"),
            StepVariant("bf16 + 1 pair worker", precision="bf16", workers=1),
            StepVariant("conv stem, fp32", stem="conv"), StepVariant("conv stem, bf16", stem="conv", precision="bf16"),
            StepVariant("conv stem, fp32, dB, masks", stem="conv", log="db", masks=1.0),
            StepVariant("conv stem, bf16, dB, masks", stem="conv", log="db", precision="bf16", masks=1.0))


def _loader(tracks, noise, batch: int, workers: int, band: float):
    distorter = Distorter(DistortConfig(snr_db=(-5.0, 20.0), p_band=band), noise)
    return make_loader(tracks, distorter, batch, num_workers=workers, seed=0)


def pairs_ms(tracks, noise, batch: int = 256, n: int = 8, band: float = 0.2) -> float:
    """Median milliseconds to produce one batch of (clean, distorted) pairs in this process."""
    batches = iter(_loader(tracks, noise, batch, 0, band))
    next(batches)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        next(batches)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def step_ms(v: StepVariant, tracks, noise, preset: str = "small", batch: int = 256, steps: int = 10,
            warm: int = 3, band: float = 0.2) -> dict:
    """Median wall and CPU milliseconds of `steps` training steps of variant `v` (after `warm` steps)."""
    cfg = ModelConfig.preset(preset, stem=v.stem)
    cfg = replace(cfg, mel=replace(cfg.mel, log=v.log))
    torch.manual_seed(0)
    lcfg = LossConfig(masks=MaskConfig(p=v.masks) if v.masks else None)
    tcfg = TrainConfig(steps=warm + steps, warmup=1, precision=v.precision, progress=False)
    trainer = Trainer(build_model(cfg), lambda m, b: fingerprint_loss(m, b, lcfg),
                      iter(_loader(tracks, noise, batch, v.workers, band)), tcfg)
    trainer.run()
    h = trainer.history[warm:]
    return {"variant": v.name, "ms_wall": 1e3 * statistics.median(x["sec"] for x in h),
            "ms_cpu": 1e3 * statistics.median(x["cpu"] / x["threads"] for x in h),
            "loss": statistics.mean(x["loss"] for x in h)}


def network_ms(stem: str, precision: str, preset: str = "small", batch: int = 256, steps: int = 6,
               compile: bool = False) -> dict:
    """The network alone: forward, backward and AdamW of 2 x `batch` random log-mel windows, median of
    `steps` (after 2 warm-up steps, which include `torch.compile`'s compiling when asked)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.preset(preset, stem=stem))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    encode = torch.compile(model.encode_mel) if compile else model.encode_mel
    S = torch.randn(2 * batch, model.cfg.mel.n_mels, model.cfg.n_frames)  # (2B, n_mels, frames)
    wall, cpu = [], []
    for i in range(steps + 2):
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            e, l = encode(S)
        loss = e.float().square().sum() + l.float().square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            wall.append(time.perf_counter() - t0)
            cpu.append((time.process_time() - c0) / torch.get_num_threads())
    name = f"network alone: {stem}, {precision}{', torch.compile' if compile else ''}"
    return {"variant": name, "ms_wall": 1e3 * statistics.median(wall), "ms_cpu": 1e3 * statistics.median(cpu),
            "loss": float("nan")}


def train_step_benchmark(tracks, noise, variants=VARIANTS, progress: bool = True, compile: bool = False,
                         bf16: bool | None = None, **kw) -> list[dict]:
    """`step_ms` of every variant; before them the pairs alone and the network alone (`network_ms`).

    bf16: measure the bfloat16 rows too; None: only where the CPU has native bfloat16 (`cpu_has_bf16`).
    """
    bf16 = cpu_has_bf16() if bf16 is None else bf16
    precisions = ("fp32", "bf16") if bf16 else ("fp32",)
    variants = [v for v in variants if v.precision in precisions]
    rows = [{"variant": "pairs alone (no model)", "ms_wall": pairs_ms(tracks, noise, kw.get("batch", 256)),
             "ms_cpu": float("nan"), "loss": float("nan")}]
    nets = [(s, p, False) for s in ("patch", "conv") for p in precisions] + compile * [("patch", "fp32", True)]
    for stem, precision, comp in tqdm(nets, desc="network", unit="variant", disable=not progress):
        rows.append(network_ms(stem, precision, kw.get("preset", "small"), kw.get("batch", 256), compile=comp))
    for v in tqdm(variants, desc="variants", unit="variant", disable=not progress):
        rows.append(step_ms(v, tracks, noise, **kw))
    return rows


def markdown(rows, threads: int) -> str:
    lines = [f"| step of the training loop ({threads} threads) | ms wall | ms CPU per thread |", "| --- | --- | --- |"]
    lines += [f"| {r['variant']} | {r['ms_wall']:.0f} | {r['ms_cpu']:.0f} |".replace("| nan |", "| - |")
              for r in rows]
    return "\n".join(lines)
