"""Training: a plain loop that knows nothing of the model, and the fingerprinting objective.

The `Trainer` follows minGPT's trainer: it is handed a model, a loss function
`loss_fn(model, batch) -> (loss, logs)` and an endless iterator of batches, and
does only the mechanics: AdamW, linear warm-up then cosine decay, gradient
clipping, a tqdm bar, periodic validation, checkpoints and resume. The
objective of Singh et al. 2023 (arXiv 2211.11060) lives below it: NT-Xent on the
embeddings of a clean window and its distorted replica, plus the OT hash loss
that spreads the batch evenly over the 2^K codes (or, for the unbalanced
baseline, a loss that only asks the two views' bits to agree).

Notebook: 05_contrastive_learning.ipynb
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .contrastive import nt_xent, top1_accuracy
from .errors import FormatError
from .ot import bucket_stats, ot_hash_loss, sign_codes, sign_hash_loss


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
        from tqdm.auto import tqdm

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
            from tqdm.auto import tqdm

            tqdm.write("validation " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                 for k, v in metrics.items()))
        return metrics

    # ---- checkpoints: tensors and plain Python values only, read back with weights_only=True

    def save_checkpoint(self, path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
                 "history": self.history, "val_history": self.val_history, "cfg": asdict(self.cfg)}
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)  # a checkpoint is never half written

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


# ----------------------------------------------------------------------------
# the objective: contrastive embeddings + balanced (or plain) hash codes


@dataclass
class LossConfig:
    tau: float = 0.1  # NT-Xent temperature
    hash: str = "ot"  # "ot": Sinkhorn-balanced codes; "sign": the unbalanced baseline; "none"
    hash_weight: float = 0.5  # the hash loss sums K per-bit cross-entropies
    ot_eps: float = 0.1  # per bit: a bit of confidence |tanh(l / tau)| = eps moves its target by 2 nats
    ot_tau: float = 1.0  # scales the logits inside the hash losses (OT and sign alike)
    ot_iters: int = 3


def fingerprint_loss(model, batch, cfg: LossConfig = LossConfig()):
    """The training objective for a (clean, distorted) batch.

    Args:
        model: maps (B, T) windows to (emb (B, D), logits (B, K)).
        batch: (clean (B, T), distorted (B, T)).
        cfg: weights and temperatures.

    Returns:
        (loss, logs) with logs holding the parts of the loss and the in-batch top-1.
    """
    clean, noisy = batch
    e, l = model(torch.cat([clean, noisy]))  # (2B, D), (2B, K)
    B = clean.shape[0]
    e1, e2, l1, l2 = e[:B], e[B:], l[:B], l[B:]
    L_con = nt_xent(e1, e2, cfg.tau)
    if cfg.hash == "ot":
        # balanced_assignment's cost is the mean agreement <v, h> / K: per-bit eps over K keeps
        # the targets of confident bits sharp at any K (eps = 0.05 on the mean leaves them near 0.5)
        K = l1.shape[1]
        L_hash = ot_hash_loss(l1, l2, eps=cfg.ot_eps / K, tau=cfg.ot_tau, n_iter=cfg.ot_iters)
    elif cfg.hash == "sign":
        L_hash = sign_hash_loss(l1, l2, tau=cfg.ot_tau)
    elif cfg.hash == "none":
        L_hash = torch.zeros((), device=e.device)
    else:
        raise ValueError(f"hash must be 'ot', 'sign' or 'none', got {cfg.hash!r}")
    with torch.no_grad():
        acc = float(top1_accuracy(e1, e2))
        bits_agree = float(((l1 > 0) == (l2 > 0)).float().mean())
    return L_con + cfg.hash_weight * L_hash, {"contrastive": L_con.item(), "hash": L_hash.item(),
                                              "batch_top1": acc, "bits_agree": bits_agree}


def make_validator(clean: torch.Tensor, distorted: torch.Tensor, batch_size: int = 512):
    """Validation on held-out windows: top-1 retrieval of each distorted window among
    all clean ones, share of codes that survive the distortion, and bucket balance.

    Args:
        clean: (N, T) held-out clean windows (from tracks never trained on).
        distorted: (N, T) their distorted replicas (fixed, so numbers are comparable).
        batch_size: windows per forward pass.

    Returns:
        `validate(model) -> dict` for the `Trainer`.
    """
    def embed(model, X):
        dev = next(model.parameters()).device
        outs = [model(X[i:i + batch_size].to(dev)) for i in range(0, len(X), batch_size)]
        return torch.cat([o[0] for o in outs]).cpu(), torch.cat([o[1] for o in outs]).cpu()

    def validate(model) -> dict:
        e1, l1 = embed(model, clean)
        e2, l2 = embed(model, distorted)
        K = l1.shape[1]
        stats = bucket_stats(sign_codes(l1), K)
        return {"val_top1": float(top1_accuracy(e2, e1)),
                "code_exact": float(((l1 > 0) == (l2 > 0)).all(1).float().mean()),
                "entropy": float(stats["entropy_norm"]), "largest_over_mean": float(stats["largest_over_mean"])}

    return validate


# ----------------------------------------------------------------------------
# putting it together: data, distortions, model, trainer (used by `minihash train`)


def validation_set(tracks, distorter, n: int = 2000, seed: int = 1234, sr: int = 8000, win_s: float = 1.0):
    """Fixed held-out (clean, distorted) windows at random continuous positions.

    Args:
        tracks: list of (T,) arrays never trained on.
        distorter: the distortion chain (called with a seeded generator).
        n: number of windows.

    Returns:
        (clean (n, W), distorted (n, W)) tensors.
    """
    from .data import random_windows

    g = torch.Generator().manual_seed(seed)
    clean = random_windows(tracks, n, win_s=win_s, sr=sr, seed=seed)  # (n, W)
    return clean, torch.cat([distorter(clean[i:i + 256], generator=g) for i in range(0, n, 256)])


def train_command(args) -> int:
    """`minihash train`: see `minihash train --help`."""
    from . import data
    from .distort import DistortConfig, Distorter
    from .encoder import ModelConfig, build_model, count_parameters, save_model

    if args.threads:
        torch.set_num_threads(args.threads)
    tracks = []
    if args.synth:
        tracks += data.synth_tracks(args.synth, args.synth_seconds, seed=0)
    for d in args.music:
        tracks += data.AudioFolder(d).tracks
    val_tracks = [t for d in args.val_music for t in data.AudioFolder(d).tracks]
    if not val_tracks:  # hold out procedural tracks the training set does not contain
        val_tracks = data.synth_tracks(20, args.synth_seconds, seed=10_000)
    if not tracks:
        raise SystemExit("minihash train: no training audio: use --synth N and/or --music DIR")
    noise = data.training_noise(args.noise, args.speech, split="train")
    rirs = data.load_rirs(args.rirs) if args.rirs else None
    if not 0.0 <= args.band <= 1.0:
        raise SystemExit(f"minihash train: --band is a share of training pairs, between 0 and 1, got {args.band}")
    dcfg = DistortConfig(snr_db=tuple(args.snr), p_band=args.band)
    distorter = Distorter(dcfg, noise, rirs)
    val_noise = data.training_noise(args.noise, args.speech, split="eval")
    val_distorter = Distorter(dcfg, val_noise, None, seed=1)  # rooms and noise not seen in training

    cfg = ModelConfig.preset(args.preset)
    front = {k: v for k, v in (("n_mels", args.mels), ("n_fft", args.n_fft)) if v is not None}
    if front:  # another front end for the same network (the patch embedding adapts to it)
        cfg = replace(cfg, mel=replace(cfg.mel, **front))
    model = build_model(cfg)
    hours = sum(len(t) for t in tracks) / 8000 / 3600
    print(f"training {args.preset} ({count_parameters(model) / 1e6:.2f} M parameters, hash={args.hash}) on "
          f"{len(tracks)} tracks ({hours:.1f} h), {len(noise)} noise sources, "
          f"{'synthetic rooms' if rirs is None else f'{len(rirs)} RIRs'}; {args.steps} steps of batch {args.batch}")
    batches = iter(data.make_loader(tracks, distorter, args.batch, num_workers=args.workers, seed=args.seed))
    clean, noisy = validation_set(val_tracks, val_distorter, n=2000)
    tcfg = TrainConfig(steps=args.steps, lr=args.lr, warmup=args.warmup, threads=args.threads, seed=args.seed,
                       ckpt=args.ckpt or str(args.out) + ".ckpt")
    lcfg = LossConfig(hash=args.hash)
    t0 = time.time()
    trainer = Trainer(model, lambda m, b: fingerprint_loss(m, b, lcfg), batches, tcfg,
                      validate=make_validator(clean, noisy))
    start = trainer.step  # > 0 when resumed from the checkpoint
    trainer.run()
    final = trainer.val_history[-1] if trainer.val_history else trainer.run_validation()
    save_model(model.cpu(), args.out, extra={"train": {
        "preset": args.preset, **({"front_end": front} if front else {}), "hash": args.hash, "steps": args.steps, "batch": args.batch, "lr": args.lr,
        "tracks": len(tracks), "hours": round(hours, 2), "snr_db": list(args.snr), "band": args.band,
        "music": list(args.music), "noise": list(args.noise), "speech": list(args.speech), "synth": args.synth, "wall_s": round(time.time() - t0, 1),
        "step_s": round(sum(h.get("sec", 0.0) for h in trainer.history), 1),  # every step, earlier runs included
        **({"resumed_from_step": start} if start else {}), "validation": final}})
    print(f"wrote {args.out}: " + ", ".join(f"{k}={v:.4g}" for k, v in final.items() if isinstance(v, float)))
    return 0
