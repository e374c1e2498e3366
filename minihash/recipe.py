"""The training recipe: what `Trainer` is handed to make a fingerprinter, and `minihash train`.

The objective of Singh et al. 2023 (arXiv 2211.11060): NT-Xent (Chen et al. 2020,
SimCLR) on the embeddings of a clean window and its distorted replica, plus the OT
hash loss that spreads the batch evenly over the 2^K codes (or, for the unbalanced
baseline, a loss that only asks the two views' bits to agree). Validation retrieves
held-out distorted windows among their clean originals. `train_from_args` puts it
together: training audio (procedural and/or folders), the distortion chain, the
model, the `Trainer`, and the model file.

Notebook: 05_contrastive_learning.ipynb
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .audio import SR, AudioFolder
from .contrastive import nt_xent, top1_accuracy
from .corpus import synth_tracks
from .distort import DistortConfig, Distorter
from .errors import FormatError
from .encoder import ModelConfig, count_parameters
from .modelfile import build_model, save_model
from .ot import bucket_stats, ot_hash_loss, sign_codes, sign_hash_loss
from .pairs import load_rirs, make_loader, random_windows, training_noise
from .spectrogram import MaskConfig, spec_augment
from .train import TrainConfig, Trainer, checkpoint_weights, step_cpu_s

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
    masks: MaskConfig | None = None  # SpecAugment masks and cut-outs on the distorted view (None: off)


def fingerprint_loss(model, batch, cfg: LossConfig = LossConfig()):
    """The training objective for a (clean, distorted) batch.

    Args:
        model: an `Encoder`: maps (B, T) windows to (emb (B, D), logits (B, K)) through its
            `frontend` (log-mel) and `encode_mel`.
        batch: (clean (B, T), distorted (B, T)).
        cfg: weights and temperatures, and the masks on the distorted view's log-mel.

    Returns:
        (loss, logs) with logs holding the parts of the loss and the in-batch top-1. Under bf16
        autocast only the network runs in bf16: the losses (Sinkhorn's exponentials, the
        temperature-scaled similarities) are computed in float32.
    """
    clean, noisy = batch
    B = clean.shape[0]
    if cfg.masks is None:
        e, l = model(torch.cat([clean, noisy]))  # (2B, D), (2B, K)
    else:
        with torch.autocast(clean.device.type, enabled=False):
            S = model.frontend(torch.cat([clean, noisy]))  # (2B, n_mels, frames)
            S = torch.cat([S[:B], spec_augment(S[B:], cfg.masks)])
        e, l = model.encode_mel(S)
    with torch.autocast(clean.device.type, enabled=False):
        return _objective(e.float(), l.float(), B, cfg)


def _objective(e: torch.Tensor, l: torch.Tensor, B: int, cfg: LossConfig):
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


# Beside val_top1 (the training's own mix of conditions and SNRs), the same windows at 0 dB, noise and noise in a
# room: these rank models as the evaluation's noisy cells do, where val_top1 did not (model card, "in-training
# validation").
HARD_VALIDATION = {"val_noise_0db": "noise", "val_noise_reverb_0db": "noise+reverb"}


def make_validator(clean: torch.Tensor, distorted: torch.Tensor, batch_size: int = 512, **more: torch.Tensor):
    """Validation on held-out windows: top-1 retrieval of each distorted window among
    all clean ones, share of codes that survive the distortion, and bucket balance.

    Args:
        clean: (N, T) held-out clean windows (from tracks never trained on).
        distorted: (N, T) their distorted replicas (fixed, so numbers are comparable).
        batch_size: windows per forward pass.
        **more: name=(N, T) other replicas of the same clean windows (e.g. `val_noise_0db`): the top-1
            of each is reported under its name, beside `val_top1`.

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
                **{name: float(top1_accuracy(embed(model, X)[0], e1)) for name, X in more.items()},
                "code_exact": float(((l1 > 0) == (l2 > 0)).all(1).float().mean()),
                "entropy": float(stats["entropy_norm"]), "largest_over_mean": float(stats["largest_over_mean"])}

    return validate


# ----------------------------------------------------------------------------
# validation: fixed held-out pairs


def validation_set(tracks, distorter, n: int = 2000, seed: int = 1234, sr: int = SR, win_s: float = 1.0):
    """Fixed held-out (clean, distorted) windows at random continuous positions.

    Args:
        tracks: list of (T,) arrays never trained on.
        distorter: the distortion chain (called with a seeded generator).
        n: number of windows.

    Returns:
        (clean (n, W), distorted (n, W)) tensors.
    """
    clean = random_windows(tracks, n, win_s=win_s, sr=sr, seed=seed)  # (n, W)
    return clean, distorted_replicas(clean, distorter, seed)


def distorted_replicas(clean: torch.Tensor, distorter, seed: int = 1234) -> torch.Tensor:
    """(n, W) fixed distorted replicas of `clean`, the distorter drawing from a generator seeded `seed`."""
    g = torch.Generator().manual_seed(seed)
    return torch.cat([distorter(clean[i:i + 256], generator=g) for i in range(0, len(clean), 256)])


def held_out_tracks(seconds: float = 30.0) -> list:
    """20 procedural tracks no training draws (seed 10,000): the validation music when none is given."""
    return synth_tracks(20, seconds, seed=10_000)


def make_validation(val_tracks, noise_dirs=(), speech_dirs=(), dcfg: DistortConfig | None = None, n: int = 2000):
    """The validation of `minihash train` (and `minihash validate`): `n` windows of tracks never trained on,
    distorted as in training (`dcfg`) with noise and rooms training never hears (`val_top1`), and the same
    windows at 0 dB in noise and in a room with noise (`HARD_VALIDATION`).

    Args:
        val_tracks: held-out (T,) tracks.
        noise_dirs, speech_dirs: the training's noise folders: their evaluation split is used.
        dcfg: the training's distortions (SNR range, band-limiting); default `DistortConfig()`.
        n: windows.

    Returns:
        `validate(model) -> dict`, as `make_validator`.
    """
    noise = training_noise(noise_dirs, speech_dirs, split="eval")
    clean, noisy = validation_set(val_tracks, Distorter(dcfg or DistortConfig(), noise, None, seed=1), n=n)
    hard = {name: distorted_replicas(clean, Distorter(DistortConfig.only(cond, 0.0), noise, None, seed=1))
            for name, cond in HARD_VALIDATION.items()}  # the same clean windows, other replicas
    return make_validator(clean, noisy, **hard)


# ----------------------------------------------------------------------------
# putting it together: data, distortions, model, trainer (used by `minihash train`)


def model_config(args) -> tuple[ModelConfig, dict]:
    """The preset of `minihash train --preset`, with the front end and stem options applied; and the
    front-end changes alone (recorded in the model file)."""
    cfg = ModelConfig.preset(args.preset)
    front = {k: v for k, v in (("n_mels", args.mels), ("n_fft", args.n_fft), ("log", args.log)) if v is not None}
    if front:  # another front end for the same network (the patch embedding adapts to it)
        cfg = replace(cfg, mel=replace(cfg.mel, **front))
    if args.stem:
        cfg = replace(cfg, stem=args.stem)
    for flag, field, value in (("--stem-freq", "stem_freq", args.stem_freq if args.stem_freq != 1 else None),
                               ("--stem-channels", "stem_channels", args.stem_channels)):
        if value is not None:
            try:
                cfg = replace(cfg, **{field: value})
            except ValueError as e:  # the config's own rule, said in the terms of the command line
                raise SystemExit(f"minihash train: {flag} {value}: {e}") from None
    return cfg, front


def export_checkpoint(ckpt, out) -> Path:
    """Write the weights of a training checkpoint as a model file (`load_model` reads it), to evaluate a
    long run before it ends; the model JSON records the checkpoint, its step and its last validation.

    Raises:
        FormatError: not a checkpoint, or one that does not record its model's configuration (written
            before checkpoints kept it), or weights that do not fit that configuration.
    """
    weights, config, rec = checkpoint_weights(ckpt)
    if not config:
        raise FormatError(ckpt, "this checkpoint does not record its model's configuration (written before "
                                "checkpoints kept it): resume its training once, and export the next checkpoint")
    try:
        model = build_model(ModelConfig.from_dict(config))
        model.load_state_dict(weights)
    except (TypeError, ValueError, RuntimeError) as e:
        raise FormatError(ckpt, f"its weights do not fit its recorded configuration ({str(e).splitlines()[0][:200]})")
    return save_model(model.eval(), out, extra={"exported_from": {
        "checkpoint": str(Path(ckpt).resolve()), "step": rec["step"],
        "validation": rec["val_history"][-1] if rec["val_history"] else None, "segments": rec["segments"]}})


def train_from_args(args) -> int:
    """`minihash train`: data, distortions, model and `Trainer`, from the parsed arguments (`minihash train --help`).

    Returns:
        0, the exit status; the model file is written to `args.out`.
    """
    if args.threads:
        torch.set_num_threads(args.threads)
    tracks = []
    if args.synth:
        tracks += synth_tracks(args.synth, args.synth_seconds, seed=0)
    for d in args.music:  # maps of the decode cache: hours of audio in the page cache, not in this process
        tracks += AudioFolder(d, mmap=True).tracks
    val_tracks = [t for d in args.val_music for t in AudioFolder(d, mmap=True).tracks]
    if not val_tracks:  # hold out procedural tracks the training set does not contain
        val_tracks = held_out_tracks(args.synth_seconds)
    if not tracks:
        raise SystemExit("minihash train: no training audio: use --synth N and/or --music DIR")
    noise = training_noise(args.noise, args.speech, split="train")
    rirs = load_rirs(args.rirs) if args.rirs else None
    if not 0.0 <= args.masks <= 1.0:
        raise SystemExit(f"minihash train: --masks is a share of training pairs, between 0 and 1, got {args.masks}")
    if not 0.0 <= args.band <= 1.0:
        raise SystemExit(f"minihash train: --band is a share of training pairs, between 0 and 1, got {args.band}")
    if not args.tau > 0:
        raise SystemExit(f"minihash train: --tau is a temperature, above 0, got {args.tau}")
    dcfg = DistortConfig(snr_db=tuple(args.snr), p_band=args.band)
    distorter = Distorter(dcfg, noise, rirs)

    cfg, front = model_config(args)
    model = build_model(cfg)
    hours = sum(len(t) for t in tracks) / SR / 3600
    print(f"training {args.preset} ({count_parameters(model) / 1e6:.2f} M parameters, hash={args.hash}) on "
          f"{len(tracks)} tracks ({hours:.1f} h), {len(noise)} noise sources, "
          f"{'synthetic rooms' if rirs is None else f'{len(rirs)} RIRs'}; {args.steps} steps of batch {args.batch}")
    try:
        batches = iter(make_loader(tracks, distorter, args.batch, num_workers=args.workers, seed=args.seed,
                                   per_track=args.per_track))
    except ValueError as e:  # the dataset's own rule (tracks are non-empty here), said in the command line's terms
        raise SystemExit(f"minihash train: --per-track {args.per_track}: {e}") from None
    n_tracks = len(tracks)
    validate = make_validation(val_tracks, args.noise, args.speech, dcfg)
    tcfg = TrainConfig(steps=args.steps, lr=args.lr, warmup=args.warmup, threads=args.threads, seed=args.seed,
                       ckpt=args.ckpt or str(args.out) + ".ckpt", precision=args.precision,
                       budget_s=args.budget_min * 60 if args.budget_min else None, model_config=cfg.to_dict())
    lcfg = LossConfig(tau=args.tau, hash=args.hash, masks=MaskConfig(p=args.masks) if args.masks > 0 else None)
    t0 = time.time()
    trainer = Trainer(model, lambda m, b: fingerprint_loss(m, b, lcfg), batches, tcfg,
                      validate=validate)
    start = trainer.step  # > 0 when resumed from the checkpoint
    trainer.run()
    final = trainer.val_history[-1] if trainer.val_history else trainer.run_validation()
    save_model(model.cpu(), args.out, extra={"train": {
        "preset": args.preset, **({"front_end": front} if front else {}), "hash": args.hash, "steps": trainer.step,
        "batch": args.batch, "lr": args.lr, "tracks": n_tracks, "hours": round(hours, 2),
        "snr_db": list(args.snr), "band": args.band, "masks": args.masks, "tau": args.tau,
        "per_track": args.per_track,
        "precision": trainer.precision,
        **({"budget_min": args.budget_min} if args.budget_min else {}), "music": list(args.music),
        "noise": list(args.noise), "speech": list(args.speech), "synth": args.synth,
        "wall_s": round(time.time() - t0, 1),
        "step_s": round(sum(h.get("sec", 0.0) for h in trainer.history), 1),  # every step, earlier runs included
        "step_cpu_s": round(step_cpu_s(trainer.history), 1), "segments": trainer.segments,
        **({"resumed_from_step": start} if start else {}), "validation": final}})
    print(f"wrote {args.out}: " + ", ".join(f"{k}={v:.4g}" for k, v in final.items() if isinstance(v, float)))
    return 0
