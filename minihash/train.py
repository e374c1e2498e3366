"""Training: a plain loop that knows nothing of the model.

The `Trainer` follows minGPT's trainer: it is handed a model, a loss function
`loss_fn(model, batch) -> (loss, logs)` and an endless iterator of batches, and
does only the mechanics: AdamW, linear warm-up then cosine decay, gradient
clipping, bfloat16 autocast where the processor computes in it natively, a budget
of step time, a tqdm bar, periodic validation, checkpoints and resume. What it is
handed for a fingerprinter (the objective of Singh et al. 2023, the data, the
validation) is the recipe, in `recipe`.

Notebook: 05_contrastive_learning.ipynb
"""
from __future__ import annotations

import math
import os
import statistics
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from matplotlib.figure import Figure  # no pyplot: works headless, leaves no global state
from tqdm.auto import tqdm

from .errors import FormatError, TrainingError
from .files import temp_name
from .machine import cpu_has_bf16, machine_info


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
    precision: str = "fp32"  # "fp32", "bf16" (autocast) or "auto": bf16 where the CPU has AVX512-BF16/AMX
    budget_s: float | None = None  # stop when the steps' CPU time reaches this (every run's steps counted)
    seed: int = 0
    progress: bool = True
    model_config: dict | None = None  # kept in each checkpoint, so its weights can be exported (the trainer never reads it)


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


def pick_precision(name: str, device: torch.device) -> str:
    """"fp32" or "bf16". "auto" takes bf16 where it is native (AVX512-BF16 or AMX on a CPU, a GPU
    that supports it): emulated bf16 is slower than fp32."""
    if name not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {name!r}")
    if name != "auto":
        return name
    native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_bf16()
    return "bf16" if native else "fp32"


BF16_TOLERANCE = 0.01  # relative loss difference bf16 may make on one batch (rounding makes under 0.05 %)


def step_cpu_s(history) -> float:
    """The CPU time of the steps in `history` per torch thread: on a quiet machine, their wall time;
    on a busy one it does not grow with the other jobs, so budgets stay comparable."""
    return sum(h.get("cpu", h.get("sec", 0.0)) / h.get("threads", 1) for h in history)


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
        self.precision = pick_precision(cfg.precision, self.device)
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
        self.segments: list[dict] = []  # one dict per run (a resumed run adds one): steps, time, machine
        if cfg.ckpt and Path(cfg.ckpt).exists():
            self.load_checkpoint(cfg.ckpt)

    def run(self) -> "Trainer":
        cfg = self.cfg
        bar = tqdm(total=cfg.steps, initial=self.step, desc="training", unit="step", disable=not cfg.progress)
        self._begin_segment()
        self.model.train()
        while self.step < cfg.steps:
            logs = self._one_step()
            bar.total = cfg.steps  # a time budget may have set the number of steps
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

    def _one_step(self) -> dict:
        cfg = self.cfg
        t0, c0 = time.perf_counter(), time.process_time()
        batch = tuple(b.to(self.device, non_blocking=True) for b in next(self.batches))
        if self.precision == "bf16" and "bf16_check" not in self.segments[-1]:
            self._check_bf16(batch)
        for g in self.opt.param_groups:
            g["lr"] = lr_at(self.step, cfg)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            loss, logs = self.loss_fn(self.model, batch)
        if not torch.isfinite(loss) and self.precision == "bf16":  # bf16 kernels gone wrong: this step in fp32
            self._leave_bf16(f"the loss is {loss.item()} under bfloat16 autocast at step {self.step + 1}")
            loss, logs = self.loss_fn(self.model, batch)
        if not torch.isfinite(loss):
            raise TrainingError(cfg.ckpt or "training", f"the loss is {loss.item()} at step {self.step + 1} "
                                f"({self.precision}, learning rate {lr_at(self.step, cfg):.3g}): stopped before "
                                "the weights took it; the last checkpoint is as it was")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip)
        self.opt.step()
        self.step += 1
        logs = {"step": self.step, "loss": loss.item(), "lr": lr_at(self.step - 1, cfg), "grad_norm": float(gnorm),
                "sec": time.perf_counter() - t0, "cpu": time.process_time() - c0, "threads": torch.get_num_threads(),
                **logs}
        self.history.append(logs)
        self._end_segment()
        if cfg.budget_s:
            self._fit_budget()
        return logs

    def _check_bf16(self, batch) -> None:
        """bfloat16 autocast must compute what float32 does, up to rounding, and some kernels do not:
        on CPUs with AMX, PyTorch 2.14's oneDNN convolutions return garbage in bf16 for the NAFP-style
        CNN (its loss comes out 5 % off or NaN, batch after batch). Once per run, the first batch goes
        through the loss both ways (eval mode, the same random draws); where they differ by more than
        BF16_TOLERANCE, the run leaves bf16 (`_leave_bf16`). A NaN loss later does the same."""
        was_training = self.model.training
        self.model.eval()
        losses = []
        for bf16 in (False, True):
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), torch.no_grad():
                torch.manual_seed(self.cfg.seed + self.step)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                    losses.append(float(self.loss_fn(self.model, batch)[0]))
        self.model.train(was_training)
        fp32, bf16 = losses
        ok = math.isfinite(bf16) and abs(bf16 - fp32) <= BF16_TOLERANCE * max(abs(fp32), 1e-6)
        self.segments[-1]["bf16_check"] = {"fp32_loss": fp32, "bf16_loss": bf16, "ok": ok}
        if not ok:
            self._leave_bf16(f"bfloat16 autocast gives a loss of {bf16:.4g} where float32 gives {fp32:.4g} on the "
                             f"same batch")

    def _leave_bf16(self, what: str) -> None:
        """Precision "auto" goes on in float32 (recorded in the segment); an explicit "bf16" stops."""
        why = f"{what}: this PyTorch's bfloat16 kernels compute this model wrongly on this {self.device.type}"
        if self.cfg.precision != "auto":
            raise TrainingError(self.cfg.ckpt or "training", why + "; train in float32 (--precision fp32)")
        tqdm.write(why + "; training in float32 from here")
        self.precision = self.segments[-1]["precision"] = "fp32"
        self.segments[-1]["bf16_left"] = {"step": self.step, "why": what}

    def _fit_budget(self, probe: int = 20) -> None:
        """Set the number of steps so that the steps' CPU time (every run's) ends at `budget_s`: after
        `probe` steps of this run, from their median (the cosine schedule follows the new length)."""
        seg = self.segments[-1]
        done = self.step - seg["start_step"]
        if done == probe or (done > probe and done % 250 == 0):  # and re-fitted now and then
            recent = [h["cpu"] / h["threads"] for h in self.history[-probe:]]
            left = self.cfg.budget_s - step_cpu_s(self.history)
            self.cfg.steps = self.step + max(0, math.ceil(left / statistics.median(recent)))

    def _begin_segment(self) -> None:
        m = machine_info()
        self.segments.append({"start_step": self.step, "end_step": self.step, "step_s": 0.0, "step_cpu_s": 0.0,
                              "precision": self.precision, "device": str(self.device), "cpu": m["cpu"],
                              "bf16_native": cpu_has_bf16(),
                              "threads": torch.get_num_threads(), "torch": str(m["torch"]),
                              "started": time.strftime("%Y-%m-%d %H:%M:%S")})

    def _end_segment(self) -> None:
        seg, h = self.segments[-1], self.history[-1]
        seg["end_step"] = self.step
        seg["step_s"] = round(seg["step_s"] + h["sec"], 3)
        seg["step_cpu_s"] = round(seg["step_cpu_s"] + h["cpu"] / h["threads"], 3)

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
                 "history": self.history, "val_history": self.val_history, "segments": self.segments,
                 "cfg": asdict(self.cfg)}
        tmp = temp_name(path)
        try:
            torch.save(state, tmp)
            os.replace(tmp, path)  # a checkpoint is never half written
        finally:
            tmp.unlink(missing_ok=True)

    def load_checkpoint(self, path) -> None:
        state = _load_state(path, self.device)
        try:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["opt"])
        except Exception as e:
            raise FormatError(path, f"not a usable checkpoint for this model ({str(e).splitlines()[0][:200]})") from None
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        self.val_history = list(state.get("val_history", []))
        self.segments = list(state.get("segments", []))


# ----------------------------------------------------------------------------
# what a checkpoint says about the runs that made it

def checkpoint_record(path) -> dict:
    """The record of a training checkpoint, without its tensors: {"step", "segments", "val_history"}.

    Read with `weights_only=True` (tensors and plain values only, never arbitrary objects);
    anything else is refused with a `FormatError` naming the file."""
    return _record(_load_state(path, "cpu"))


def _record(state: dict) -> dict:
    return {"step": int(state["step"]), "segments": list(state.get("segments", [])),
            "val_history": list(state.get("val_history", []))}


def checkpoint_weights(path) -> tuple[dict, dict | None, dict]:
    """A checkpoint's model weights (a state dict), the model configuration its run recorded
    (`TrainConfig.model_config`; None in checkpoints written before it was kept) and its record (as
    `checkpoint_record`), from one read; anything but tensors and plain values is refused."""
    state = _load_state(path, "cpu")
    cfg = state.get("cfg")
    return state["model"], cfg.get("model_config") if isinstance(cfg, dict) else None, _record(state)


def _bf16_note(segment: dict) -> str:
    """Whether the segment's CPU multiplied bfloat16 natively (older records do not say)."""
    return {True: " (native bf16)", False: " (no native bf16)"}.get(segment.get("bf16_native"), "")


def _precision_note(segment: dict) -> str:
    """The segment's precision, and where a run left bf16 because its kernels computed the model wrongly."""
    left = segment.get("bf16_left")
    return segment["precision"] + (f" (bf16 wrong here, left at step {left['step']})" if left else "")


def _load_state(path, device) -> dict:
    """A checkpoint's dict, read with `weights_only=True`; a `FormatError` naming the file otherwise."""
    if not Path(path).is_file():
        raise FormatError(path, "no such checkpoint file")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut one loses its directory at the end
        raise FormatError(path, "not a training checkpoint written by minihash train (not a torch archive: "
                                "another kind of file, or truncated)")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated, not a torch file, or objects that are never unpickled here
        why = ("it holds objects other than tensors and plain values, which are never unpickled"
               if "weights_only" in str(e) else str(e).splitlines()[0][:200])
        raise FormatError(path, f"not a training checkpoint written by minihash train: {why}") from None
    if not isinstance(state, dict) or not {"model", "step"} <= state.keys():
        raise FormatError(path, "not a training checkpoint written by minihash train (no model or step)")
    return state


VAL_CURVES = {"val_top1": "val top-1, held-out noise", "val_noise_0db": "val top-1, noise 0 dB",
              "val_noise_reverb_0db": "val top-1, noise + room 0 dB"}  # what `plot_records` draws, where recorded


def step_cpu_at(rec: dict, step: int) -> float:
    """Seconds of step time (CPU per thread, every segment of the record counted) spent up to `step`,
    linear within a segment; nan past the last segment. What runs of different step costs are compared on."""
    done = 0.0
    for s in sorted(rec["segments"], key=lambda s: s["start_step"]):
        n = s["end_step"] - s["start_step"]
        if step <= s["end_step"]:
            return done + (s["step_cpu_s"] * max(step - s["start_step"], 0) / n if n else 0.0)
        done += s["step_cpu_s"]
    return math.nan


def _measured(x) -> bool:
    """Whether a validation entry holds a measure: older records lack the later ones, or hold NaN for them."""
    return isinstance(x, float) and not math.isnan(x)


def plot_records(records: dict[str, dict], figsize=None) -> Figure:
    """The in-training validations of several runs (`checkpoint_record`s, by label), against steps and against
    hours of step time: a row per recorded measure (`VAL_CURVES`), the same colour for one run throughout.
    Runs whose steps cost differently (a CNN and a transformer) are compared at an equal budget on the right."""
    def points(rec, k):  # (step, value) where the run measured k (older checkpoints lack the 0 dB ones, or hold nan)
        return [(v["step"], v[k]) for v in rec["val_history"] if _measured(v.get(k))]

    keys = [k for k in VAL_CURVES if any(points(r, k) for r in records.values())]
    if not keys:
        raise ValueError("none of these checkpoints has recorded a validation")
    fig = Figure(figsize=figsize or (10, 2.8 * len(keys)), layout="constrained")
    axes = fig.subplots(len(keys), 2, squeeze=False, sharey="row")
    for (label, rec), colour in zip(records.items(), [f"C{i % 10}" for i in range(len(records))]):
        for row, k in zip(axes, keys):
            pts = points(rec, k)
            if pts:
                steps, vals = zip(*pts)
                row[0].plot(steps, vals, color=colour, label=label)
                row[1].plot([step_cpu_at(rec, s) / 3600 for s in steps], vals, color=colour, label=label)
    for row, k in zip(axes, keys):
        row[0].set_ylabel(VAL_CURVES[k])
        for ax in row:
            ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    axes[-1, 1].set_xlabel("hours of step time (CPU per thread)")
    axes[0, 0].legend(fontsize=8)
    return fig


def _cell(x) -> str:
    """A validation measure in a table: 3 decimals, "-" where the run did not measure it (older records)."""
    return f"{x:.3f}" if _measured(x) else "-"


def record_markdown(rec: dict, every: int = 1000) -> str:
    """The segments of a checkpoint's record as a table (steps, CPU step time, precision, machine), then its
    validations every `every` steps and the last one."""
    lines = ["| segment | steps | step time (CPU per thread) | precision, threads | CPU | started |",
             "| --- | --- | --- | --- | --- | --- |"]
    for i, s in enumerate(rec["segments"], 1):
        n = s["end_step"] - s["start_step"]
        per = f" ({s['step_cpu_s'] / n:.2f} s per step)" if n else ""
        lines.append(f"| {i} | {s['start_step']}-{s['end_step']} | {s['step_cpu_s'] / 60:.1f} min{per} | "
                     f"{_precision_note(s)}, {s['threads']} | {s['cpu']}{_bf16_note(s)} | {s.get('started', '-')} |")
    total = sum(s["step_cpu_s"] for s in rec["segments"])
    lines.append(f"| in all | {rec['step']} | {total / 60:.1f} min | | | |")
    vals = [v for i, v in enumerate(rec["val_history"])
            if v["step"] % every == 0 or i == len(rec["val_history"]) - 1]
    if vals:
        keys = [k for k in vals[-1] if k != "step" and isinstance(vals[-1][k], float)]
        lines += ["", "| step | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
        lines += [f"| {v['step']} | " + " | ".join(_cell(v.get(k)) for k in keys) + " |" for v in vals]
    return "\n".join(lines)
