"""Training: a plain loop that knows nothing of the model.

The `Trainer` follows minGPT's trainer: it is handed a model, a loss function
`loss_fn(model, batch) -> (loss, logs)` and an endless iterator of batches, and
does only the mechanics: AdamW, linear warm-up then cosine decay, gradient
clipping, a tqdm bar, periodic validation, checkpoints and resume. What it is
handed for a fingerprinter (the objective of Singh et al. 2023, the data, the
validation) is the recipe, in `recipe`.

Notebook: 05_contrastive_learning.ipynb
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from .errors import FormatError
from .files import temp_name


@dataclass
class TrainConfig:
    steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 100  # steps of linear warm-up
    min_lr_ratio: float = 0.05  # the cosine ends at lr * min_lr_ratio
    clip: float = 1.0  # max gradient norm
    val_every: int = 250
    ckpt_every: int = 250
    ckpt: str | None = None  # checkpoint file (resumed from if it exists)
    threads: int | None = None  # torch threads on the CPU (None: all cores)
    device: str = "auto"  # "auto": CUDA when present
    seed: int = 0
    progress: bool = True


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to `cfg.lr`, then cosine decay to `cfg.lr * cfg.min_lr_ratio`."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ----------------------------------------------------------------------------
# the trainer


class Trainer:
    """A training loop that knows nothing of the model.

    Args:
        model: any `nn.Module`.
        loss_fn: `loss_fn(model, batch) -> (loss, logs)`, batch already on the device.
        batches: an endless iterator of batches (tuples of tensors).
        cfg: the loop's settings.
        validate: optional `validate(model) -> dict` run every `cfg.val_every` steps.
        callbacks: functions `cb(trainer, step, logs)` called after every step (logging).

    Notebook: 05_contrastive_learning.ipynb
    """

    def __init__(self, model, loss_fn: Callable, batches: Iterator, cfg: TrainConfig,
                 validate: Callable | None = None, callbacks=()):
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.device = pick_device(cfg.device)
        self.model = model.to(self.device)
        self.loss_fn, self.batches, self.validate = loss_fn, batches, validate
        self.callbacks = list(callbacks)
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
        self.step = 0
        self.history: list[dict] = []  # one dict of logs per step
        self.val_history: list[dict] = []  # one dict per validation, with its step
        if cfg.ckpt and Path(cfg.ckpt).exists():
            self.load_checkpoint(cfg.ckpt)

    def run(self) -> "Trainer":
        cfg = self.cfg
        bar = tqdm(total=cfg.steps, initial=self.step, desc="training", unit="step", disable=not cfg.progress)
        self.model.train()
        while self.step < cfg.steps:
            t0 = time.perf_counter()
            batch = tuple(b.to(self.device, non_blocking=True) for b in next(self.batches))
            for g in self.opt.param_groups:
                g["lr"] = lr_at(self.step, cfg)
            loss, logs = self.loss_fn(self.model, batch)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip)
            self.opt.step()
            self.step += 1
            logs = {"step": self.step, "loss": loss.item(), "lr": lr_at(self.step - 1, cfg),
                    "grad_norm": float(gnorm), "sec": time.perf_counter() - t0, **logs}
            self.history.append(logs)
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.3f}")
            for cb in self.callbacks:
                cb(self, self.step, logs)
            if self.validate and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                self.run_validation()
            if cfg.ckpt and (self.step % cfg.ckpt_every == 0 or self.step == cfg.steps):
                self.save_checkpoint(cfg.ckpt)
        bar.close()
        return self

    def run_validation(self) -> dict:
        self.model.eval()
        with torch.no_grad():
            metrics = {"step": self.step, **self.validate(self.model)}
        self.model.train()
        self.val_history.append(metrics)
        if self.cfg.progress:
            tqdm.write("validation " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                 for k, v in metrics.items()))
        return metrics

    # ---- checkpoints: tensors and plain Python values only, read back with weights_only=True

    def save_checkpoint(self, path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
                 "history": self.history, "val_history": self.val_history, "cfg": asdict(self.cfg)}
        tmp = temp_name(path)
        try:
            torch.save(state, tmp)
            os.replace(tmp, path)  # a checkpoint is never half written
        finally:
            tmp.unlink(missing_ok=True)

    def load_checkpoint(self, path) -> None:
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["opt"])
        except Exception as e:
            raise FormatError(path, f"not a usable checkpoint for this model ({str(e).splitlines()[0][:200]})") from None
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        self.val_history = list(state.get("val_history", []))
