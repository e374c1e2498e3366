"""The trainer (schedule, clipping, checkpoints, resume; minihash.train) and the training recipe (minihash.recipe)."""
import itertools
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from minihash.cli import main
from minihash.errors import FormatError
from minihash.modelfile import load_model
from minihash.recipe import LossConfig, fingerprint_loss, make_validator
from minihash.train import TrainConfig, Trainer, lr_at


def test_schedule_warms_up_linearly_then_follows_a_cosine():
    cfg = TrainConfig(steps=1000, lr=2e-3, warmup=100, min_lr_ratio=0.05)
    assert [lr_at(s, cfg) for s in (0, 49, 99)] == pytest.approx([2e-5, 1e-3, 2e-3])
    lo = cfg.lr * cfg.min_lr_ratio
    for s in (100, 300, 550, 999, 1000, 5000):  # the textbook cosine from lr to lo over the other 900 steps
        t = min((s - 100) / 900, 1.0)
        assert lr_at(s, cfg) == pytest.approx(lo + (cfg.lr - lo) * (1 + math.cos(math.pi * t)) / 2)
    after = [lr_at(s, cfg) for s in range(100, 1001)]
    assert all(a >= b for a, b in zip(after, after[1:]))


class Toy(nn.Module):
    """A linear map, so that every step can be redone by hand."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)


def toy_loss(model, batch):
    x, y = batch
    return ((model.lin(x) - y) ** 2).mean(), {}


def toy_batches(start=0, scale=1.0):
    """The same batch for a given step however the stream is (re)started."""
    W = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.0, 1.0, -1.0, 2.0]])
    for i in itertools.count(start):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(16, 4, generator=g)
        yield x, scale * x @ W.T


def test_trainer_fits_and_clips_gradients():
    torch.manual_seed(0)
    model = Toy()
    tr = Trainer(model, toy_loss, toy_batches(), TrainConfig(steps=400, lr=0.05, warmup=10, clip=1e9, progress=False))
    tr.run()
    assert tr.history[-1]["loss"] < 1e-3 * tr.history[0]["loss"]

    # with clipping, one step moves the weights as a hand-clipped gradient does under AdamW's first update
    torch.manual_seed(0)
    model, ref = Toy(), Toy()
    ref.load_state_dict(model.state_dict())
    cfg = TrainConfig(steps=1, lr=0.1, warmup=1, clip=0.5, weight_decay=0.0, device="cpu", progress=False)
    Trainer(model, toy_loss, toy_batches(scale=100.0), cfg).run()
    loss, _ = toy_loss(ref, next(toy_batches(scale=100.0)))
    loss.backward()
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in ref.parameters()))
    assert norm > 0.5  # the clip acts
    opt = torch.optim.AdamW(ref.parameters(), lr=0.1, weight_decay=0.0)
    for p in ref.parameters():
        p.grad *= 0.5 / norm
    opt.step()
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)


def test_resume_gives_the_same_weights_as_one_run(tmp_path):
    cfg = dict(steps=20, lr=0.05, warmup=3, ckpt_every=10, progress=False)
    torch.manual_seed(0)
    straight = Toy()
    Trainer(straight, toy_loss, toy_batches(), TrainConfig(**cfg)).run()

    class Crash(Exception):
        pass

    def crash_at_11(trainer, step, logs):  # a run killed during step 11: its last checkpoint is step 10's
        if step == 11:
            raise Crash

    torch.manual_seed(0)
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(Crash):
        Trainer(Toy(), toy_loss, toy_batches(), TrainConfig(**cfg, ckpt=str(ckpt)), callbacks=[crash_at_11]).run()
    resumed = Toy()  # fresh weights: everything must come from the checkpoint
    tr = Trainer(resumed, toy_loss, toy_batches(start=10), TrainConfig(**cfg, ckpt=str(ckpt)))
    assert tr.step == 10 and len(tr.history) == 10
    tr.run()
    assert tr.step == 20 and [h["step"] for h in tr.history] == list(range(1, 21))
    for a, b in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b)


def test_a_damaged_checkpoint_is_refused(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    Trainer(Toy(), toy_loss, toy_batches(), TrainConfig(steps=2, warmup=1, ckpt=str(ckpt), progress=False)).run()
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    with pytest.raises(FormatError, match="not a training checkpoint.*truncated"):
        Trainer(Toy(), toy_loss, toy_batches(), TrainConfig(steps=4, ckpt=str(ckpt), progress=False))


class Identity(nn.Module):
    """emb = the first 8 samples normalised, logits = the first 4: a model whose answers are known."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return nn.functional.normalize(self.w * x[:, :8], dim=1), self.w * x[:, :4]


@pytest.mark.parametrize("hash_kind", ["ot", "sign", "none"])
def test_fingerprint_loss_parts(hash_kind):
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(32, 8, generator=g)
    loss, logs = fingerprint_loss(Identity(), (clean, clean.clone()), LossConfig(hash=hash_kind))
    assert torch.isfinite(loss) and logs["batch_top1"] == 1.0 and logs["bits_agree"] == 1.0
    assert loss.item() == pytest.approx(logs["contrastive"] + 0.5 * logs["hash"], rel=1e-5)
    assert (logs["hash"] == 0.0) == (hash_kind == "none")
    loss.backward()
    with pytest.raises(ValueError, match="hash must be"):
        fingerprint_loss(Identity(), (clean, clean), LossConfig(hash="lsh"))


def test_validator_scores_a_perfect_and_a_useless_model():
    g = torch.Generator().manual_seed(1)
    clean = torch.randn(64, 8, generator=g)
    validate = make_validator(clean, clean.clone(), batch_size=16)
    out = validate(Identity())
    assert out["val_top1"] == 1.0 and out["code_exact"] == 1.0
    shuffled = make_validator(clean, clean[torch.randperm(64, generator=g)], batch_size=16)(Identity())
    assert shuffled["val_top1"] < 0.2
    # other replicas of the same clean windows are scored beside: a permutation finds its fixed points only
    perm = torch.randperm(64, generator=g)
    perm[:10] = torch.arange(10)
    both = make_validator(clean, clean.clone(), batch_size=16, val_other=clean[perm])(Identity())
    assert both["val_top1"] == 1.0
    assert both["val_other"] == pytest.approx(sum(int(p) == i for i, p in enumerate(perm)) / 64)


def test_train_command_writes_a_model_and_records_a_resume(tmp_path):
    out = tmp_path / "m.safetensors"
    args = ["train", "--preset", "tiny", "--synth", "6", "--synth-seconds", "6", "--batch", "16", "--warmup", "2",
            "--threads", "1", "-o", str(out)]
    assert main(args + ["--steps", "3"]) == 0
    first = json.loads(out.with_suffix(".json").read_text())["extra"]["train"]
    assert first["steps"] == 3 and "resumed_from_step" not in first and first["step_s"] > 0
    assert main(args + ["--steps", "5"]) == 0  # the checkpoint beside it is picked up
    again = json.loads(out.with_suffix(".json").read_text())["extra"]["train"]
    assert again["resumed_from_step"] == 3 and again["step_s"] >= first["step_s"]
    assert np.isfinite(again["validation"]["val_top1"])


def test_train_command_front_end_and_band_options(tmp_path):
    out = tmp_path / "m.safetensors"
    args = ["train", "--preset", "tiny", "--synth", "6", "--synth-seconds", "6", "--batch", "16", "--warmup", "2",
            "--threads", "1", "--steps", "2", "--mels", "48", "--n-fft", "256", "--band", "0.5", "-o", str(out)]
    assert main(args) == 0
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["config"]["mel"]["n_mels"] == 48 and rec["config"]["mel"]["n_fft"] == 256
    assert rec["extra"]["train"]["front_end"] == {"n_mels": 48, "n_fft": 256} and rec["extra"]["train"]["band"] == 0.5
    with pytest.raises(SystemExit, match="--band"):
        main(args[:-4] + ["--band", "1.5", "-o", str(tmp_path / "bad.safetensors")])


# ---- bf16 autocast, the step-time budget, the record of every run


def test_bf16_autocast_loss_matches_float32():
    from minihash.corpus import synth_tracks
    from minihash.modelfile import build_model
    from minihash.encoder import ModelConfig
    from minihash.pairs import random_windows

    torch.manual_seed(0)
    model = build_model(ModelConfig.preset("tiny"))
    clean = random_windows(synth_tracks(4, 6.0), 32, seed=0)
    batch = (clean, clean + 0.05 * torch.randn_like(clean))
    lcfg = LossConfig()
    loss32, _ = fingerprint_loss(model, batch, lcfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss16, _ = fingerprint_loss(model, batch, lcfg)
    assert loss16.dtype == torch.float32  # the losses themselves are computed in float32
    assert loss16.item() == pytest.approx(loss32.item(), rel=0.02)


def test_precision_choice(monkeypatch):
    from minihash import train

    cpu = torch.device("cpu")
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: True)
    assert train.pick_precision("auto", cpu) == "bf16" and train.pick_precision("fp32", cpu) == "fp32"
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: False)
    assert train.pick_precision("auto", cpu) == "fp32"
    with pytest.raises(ValueError, match="precision"):
        train.pick_precision("fp16", cpu)


class BrokenBf16(Toy):
    """A toy whose bfloat16 arithmetic on the CPU is wrong, as oneDNN's AMX convolutions are for the CNN."""

    def __init__(self, broken_by: float):
        super().__init__()
        self.broken_by = broken_by

    def forward(self, x):
        y = self.lin(x)
        return y * self.broken_by if torch.is_autocast_enabled("cpu") else y


def broken_loss(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean(), {}


@pytest.mark.parametrize("broken_by", [float("nan"), 3.0])
def test_wrong_bf16_kernels_fall_back_to_float32_or_stop(monkeypatch, tmp_path, broken_by):
    from minihash import train
    from minihash.errors import TrainingError

    monkeypatch.setattr(train, "cpu_has_bf16", lambda: True)  # "auto" picks bf16
    torch.manual_seed(0)
    model, ref = BrokenBf16(broken_by), Toy()
    ref.load_state_dict(model.state_dict())
    cfg = TrainConfig(steps=20, lr=0.05, precision="auto", device="cpu", progress=False)
    tr = Trainer(model, broken_loss, toy_batches(), cfg).run()
    check = tr.segments[-1]["bf16_check"]
    assert tr.precision == tr.segments[-1]["precision"] == "fp32" and not check["ok"]
    # it trained in float32 from the first step: the same steps as a float32 run of the same weights
    ref_tr = Trainer(ref, toy_loss, toy_batches(), TrainConfig(steps=20, lr=0.05, device="cpu", progress=False)).run()
    assert [h["loss"] for h in tr.history] == pytest.approx([h["loss"] for h in ref_tr.history])
    assert check["fp32_loss"] == pytest.approx(ref_tr.history[0]["loss"])
    # asked for explicitly, bf16 stops before any step, with the losses and what to do
    ckpt = tmp_path / "c.pt"
    cfg = TrainConfig(steps=5, precision="bf16", ckpt=str(ckpt), device="cpu", progress=False)
    tr = Trainer(BrokenBf16(broken_by), broken_loss, toy_batches(), cfg)
    with pytest.raises(TrainingError, match=r"bfloat16 autocast gives a loss of .*\(--precision fp32\)"):
        tr.run()
    assert tr.step == 0 and not ckpt.exists()


def test_a_nan_under_bf16_later_moves_the_run_to_float32(monkeypatch):
    from minihash import train
    from minihash.errors import TrainingError

    monkeypatch.setattr(train, "cpu_has_bf16", lambda: True)

    def break_at_2(trainer, step, logs):  # sound at the first step's check, NaN under bf16 from step 3
        if step == 2:
            trainer.model.broken_by = float("nan")

    torch.manual_seed(0)
    cfg = TrainConfig(steps=6, precision="auto", device="cpu", progress=False)
    tr = Trainer(BrokenBf16(1.0), broken_loss, toy_batches(), cfg, callbacks=[break_at_2]).run()
    seg = tr.segments[-1]
    assert tr.step == 6 and seg["bf16_check"]["ok"] and seg["precision"] == "fp32"
    assert seg["bf16_left"]["step"] == 2 and "nan" in seg["bf16_left"]["why"]
    from minihash.train import record_markdown
    assert "| fp32 (bf16 wrong here, left at step 2), " in record_markdown(
        {"step": tr.step, "segments": tr.segments, "val_history": []})
    assert all(math.isfinite(h["loss"]) for h in tr.history)
    torch.manual_seed(0)
    cfg = TrainConfig(steps=6, precision="bf16", device="cpu", progress=False)
    tr = Trainer(BrokenBf16(1.0), broken_loss, toy_batches(), cfg, callbacks=[break_at_2])
    with pytest.raises(TrainingError, match=r"the loss is nan under bfloat16 autocast at step 3.*\(--precision fp32\)"):
        tr.run()
    assert tr.step == 2


def test_sound_bf16_keeps_bf16(monkeypatch):
    from minihash import train

    monkeypatch.setattr(train, "cpu_has_bf16", lambda: True)
    torch.manual_seed(0)
    cfg = TrainConfig(steps=3, precision="auto", device="cpu", progress=False)
    tr = Trainer(BrokenBf16(1.0), broken_loss, toy_batches(), cfg).run()
    check = tr.segments[-1]["bf16_check"]
    assert tr.precision == "bf16" and check["ok"]
    assert check["bf16_loss"] == pytest.approx(check["fp32_loss"], rel=0.01) and "bf16_left" not in tr.segments[-1]


def test_a_non_finite_loss_stops_training_and_keeps_the_checkpoint(tmp_path):
    from minihash.errors import TrainingError

    ckpt = tmp_path / "c.pt"
    torch.manual_seed(0)
    Trainer(Toy(), toy_loss, toy_batches(), TrainConfig(steps=4, ckpt=str(ckpt), ckpt_every=2, progress=False)).run()
    before = ckpt.read_bytes()

    def batches():
        for i, (x, y) in enumerate(toy_batches(4)):
            yield (x, y * float("nan")) if i == 1 else (x, y)

    tr = Trainer(Toy(), toy_loss, batches(), TrainConfig(steps=10, ckpt=str(ckpt), ckpt_every=1, progress=False))
    with pytest.raises(TrainingError, match=r"the loss is nan at step 6"):
        tr.run()
    assert tr.step == 5 and ckpt.read_bytes() != before  # step 5 was saved, step 6 never taken
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 5 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_budget_sets_the_number_of_steps(monkeypatch):
    from minihash import train

    clock = itertools.count()
    monkeypatch.setattr(train.time, "process_time", lambda: 0.25 * next(clock))  # every step: 0.25 s of CPU
    torch.manual_seed(0)
    cfg = TrainConfig(steps=10_000, lr=0.01, warmup=5, threads=1, budget_s=10.0, progress=False)
    tr = Trainer(Toy(), toy_loss, toy_batches(), cfg).run()
    assert tr.step == 40 == cfg.steps  # 10 s / 0.25 s
    seg = tr.segments[-1]
    assert seg["start_step"] == 0 and seg["end_step"] == 40 and seg["step_cpu_s"] == pytest.approx(10.0)


def test_every_run_is_recorded_as_a_segment(tmp_path):
    ckpt = tmp_path / "c.pt"
    torch.manual_seed(0)
    Trainer(Toy(), toy_loss, toy_batches(), TrainConfig(steps=3, ckpt=str(ckpt), progress=False)).run()
    tr = Trainer(Toy(), toy_loss, toy_batches(3), TrainConfig(steps=5, ckpt=str(ckpt), progress=False)).run()
    assert [(s["start_step"], s["end_step"]) for s in tr.segments] == [(0, 3), (3, 5)]
    assert all(s["cpu"] and s["precision"] == "fp32" and s["step_s"] > 0 for s in tr.segments)


class NotATensor:
    pass


def test_checkpoint_command_prints_the_record_and_refuses_other_files(tmp_path, capsys):
    from minihash.cli import main
    from minihash.train import checkpoint_record

    ckpt = tmp_path / "c.pt"
    torch.manual_seed(0)
    Trainer(Toy(), toy_loss, toy_batches(), TrainConfig(steps=3, ckpt=str(ckpt), progress=False)).run()
    tr = Trainer(Toy(), toy_loss, toy_batches(3), TrainConfig(steps=5, ckpt=str(ckpt), progress=False),
                 validate=lambda m: {"val_top1": 0.5}).run()
    tr.run_validation()
    tr.save_checkpoint(ckpt)
    rec = checkpoint_record(ckpt)
    assert rec["step"] == 5 and [s["end_step"] for s in rec["segments"]] == [3, 5]
    assert main(["checkpoint", str(ckpt)]) == 0
    out = capsys.readouterr().out
    total = sum(s["step_cpu_s"] for s in tr.segments) / 60
    assert "| 1 | 0-3 |" in out and "| 2 | 3-5 |" in out and f"| in all | 5 | {total:.1f} min |" in out
    assert "| 5 | 0.500 |" in out  # the last validation, whatever `every` is
    # refused, never unpickled: a file of objects, a truncated checkpoint, another kind of file, no file
    torch.save({"model": {}, "step": 1, "x": NotATensor()}, tmp_path / "objects.pt")
    (tmp_path / "cut.pt").write_bytes(ckpt.read_bytes()[:-100])
    (tmp_path / "text.pt").write_text("hello")
    for name, why in [("objects.pt", "never unpickled"), ("cut.pt", "truncated"), ("text.pt", "another kind of file"),
                      ("missing.pt", "no such checkpoint")]:
        with pytest.raises(FormatError, match=why):
            checkpoint_record(tmp_path / name)
        assert main(["checkpoint", str(tmp_path / name)]) == 2
        assert name in capsys.readouterr().err


def test_train_command_stem_masks_and_db_options(tmp_path):
    out = tmp_path / "m.safetensors"
    args = ["train", "--preset", "tiny", "--synth", "6", "--synth-seconds", "6", "--batch", "16", "--warmup", "2",
            "--threads", "1", "--steps", "2", "--stem", "conv", "--log", "db", "--masks", "0.5", "--tau", "0.05",
            "--per-track", "4", "--precision", "fp32", "-o", str(out)]
    assert main(args) == 0
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["config"]["stem"] == "conv" and rec["config"]["mel"]["log"] == "db"
    train = rec["extra"]["train"]
    assert train["masks"] == 0.5 and train["precision"] == "fp32" and len(train["segments"]) == 1
    assert train["tau"] == 0.05 and train["per_track"] == 4
    assert set(train["validation"]) >= {"val_top1", "val_noise_0db", "val_noise_reverb_0db"}  # 0 dB beside
    with pytest.raises(SystemExit, match="--masks"):
        main(args[:-2] + ["--masks", "2", "-o", str(tmp_path / "bad.safetensors")])
    with pytest.raises(SystemExit, match="--tau"):
        main(args[:-2] + ["--tau", "0", "-o", str(tmp_path / "bad.safetensors")])
    with pytest.raises(SystemExit, match="--per-track"):
        main(args[:-2] + ["--per-track", "0", "-o", str(tmp_path / "bad.safetensors")])
    with pytest.raises(SystemExit, match="--stem-freq"):
        main(args[:-2] + ["--stem", "patch", "--stem-freq", "4", "-o", str(tmp_path / "bad.safetensors")])
    with pytest.raises(SystemExit, match="--stem-freq 0"):
        main(args[:-2] + ["--stem", "conv", "--stem-freq", "0", "-o", str(tmp_path / "bad.safetensors")])
    with pytest.raises(SystemExit, match="--stem-channels 0"):
        main(args[:-2] + ["--stem-channels", "0", "-o", str(tmp_path / "bad.safetensors")])
    with pytest.raises(SystemExit, match="--stem-channels 32"):  # the patch stem has no convolutions
        main(args[:-2] + ["--stem", "patch", "--stem-channels", "32", "-o", str(tmp_path / "bad.safetensors")])
    wide = tmp_path / "wide.safetensors"
    assert main(args[:-2] + ["--stem-channels", "32", "-o", str(wide)]) == 0
    assert json.loads(wide.with_suffix(".json").read_text())["config"]["stem_channels"] == 32
    assert load_model(wide).patch.convs[-3].out_channels == 128  # 32, 64, 128


def test_bench_train_measures_every_variant():
    from minihash.bench.train_step import StepVariant, train_step_benchmark
    from minihash.corpus import synth_tracks
    from minihash.pairs import training_noise

    variants = (StepVariant("fp32"), StepVariant("conv, dB, masks", stem="conv", log="db", masks=1.0))
    noise = training_noise((), (), split="train")  # the procedural noise bank
    rows = train_step_benchmark(synth_tracks(4, 6.0), noise, variants, progress=False, preset="tiny", batch=8, steps=1,
                                bf16=True)
    assert [r["variant"] for r in rows][0] == "pairs alone (no model)" and len(rows) == 1 + 4 + 2
    assert all(r["ms_wall"] > 0 for r in rows) and all(r["ms_cpu"] > 0 for r in rows[1:])
    assert all(math.isfinite(r["loss"]) for r in rows[-2:])
    # without bf16 the bfloat16 rows (network and steps) are left out, the float32 ones kept
    variants = variants + (StepVariant("bf16", precision="bf16"),)
    rows = train_step_benchmark(synth_tracks(4, 6.0), noise, variants, progress=False, preset="tiny", batch=8, steps=1,
                                bf16=False)
    assert [r["variant"] for r in rows] == ["pairs alone (no model)", "network alone: patch, fp32",
                                            "network alone: conv, fp32", "fp32", "conv, dB, masks"]


def test_validate_command_repeats_the_in_training_validation(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    # held out without --val-music: 20 procedural tracks of --synth-seconds (30 s), as minihash validate takes them
    assert main(["train", "--preset", "tiny", "--synth", "6", "--batch", "16", "--warmup", "2", "--threads", "1",
                 "--steps", "2", "--snr", "0", "20", "--band", "0.1", "-o", str(out)]) == 0
    recorded = json.loads(out.with_suffix(".json").read_text())["extra"]["train"]["validation"]
    capsys.readouterr()
    assert main(["validate", str(out), "--snr", "0", "20", "--band", "0.1", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    keys = [k.strip() for k in lines[-3].strip("|").split("|")][1:]
    values = [float(v) for v in lines[-1].strip("|").split("|")[1:]]
    assert keys[:3] == ["val_top1", "val_noise_0db", "val_noise_reverb_0db"]
    for k, v in zip(keys, values):  # the same windows, distortions and model: the same numbers
        assert v == pytest.approx(recorded[k], abs=1e-4), k
    assert main(["validate", str(tmp_path / "missing.safetensors")]) == 2  # refused in one line
    with pytest.raises(SystemExit):
        main(["validate", str(out), "--windows", "0"])


def test_a_checkpoint_exports_the_weights_of_its_step(tmp_path, capsys):
    out, exported = tmp_path / "m.safetensors", tmp_path / "at-3.safetensors"
    args = ["train", "--preset", "tiny", "--stem", "conv", "--synth", "6", "--synth-seconds", "6", "--batch", "16",
            "--warmup", "2", "--threads", "1", "--steps", "3", "-o", str(out)]
    assert main(args) == 0
    assert main(["checkpoint", str(out) + ".ckpt", "--export", str(exported)]) == 0
    assert "the weights at the checkpoint's step" in capsys.readouterr().out
    a, b = load_model(out), load_model(exported)  # the run's own model file, and the checkpoint's weights
    assert a.cfg == b.cfg
    x = torch.randn(4, a.cfg.n_samples, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(a(x)[0], b(x)[0], rtol=0, atol=0)
    rec = json.loads(exported.with_suffix(".json").read_text())["extra"]["exported_from"]
    assert rec["step"] == 3 and rec["validation"]["step"] == 3 and len(rec["segments"]) == 1
    # a checkpoint written before the configuration was kept: refused in one line, nothing written
    state = torch.load(str(out) + ".ckpt", weights_only=True)
    del state["cfg"]["model_config"]
    old = tmp_path / "old.ckpt"
    torch.save(state, old)
    assert main(["checkpoint", str(old), "--export", str(tmp_path / "no.safetensors")]) == 2
    assert "does not record its model's configuration" in capsys.readouterr().err
    assert not (tmp_path / "no.safetensors").exists()


def test_step_time_at_a_step_follows_the_segments():
    from minihash.train import step_cpu_at

    rec = {"segments": [{"start_step": 0, "end_step": 100, "step_cpu_s": 50.0},
                        {"start_step": 100, "end_step": 300, "step_cpu_s": 400.0}]}
    assert [step_cpu_at(rec, s) for s in (0, 40, 100, 200, 300)] == [0.0, 20.0, 50.0, 250.0, 450.0]
    assert math.isnan(step_cpu_at(rec, 301))


def test_checkpoint_command_plots_several_runs_against_steps_and_step_time(tmp_path, capsys):
    from minihash.cli import main
    from minihash.train import checkpoint_record, plot_records, step_cpu_at

    for run, vals in (("a", [0.2, 0.4]), ("b", [0.3, 0.5])):
        (tmp_path / run).mkdir()
        it = iter(vals)
        Trainer(Toy(), toy_loss, toy_batches(), TrainConfig(steps=4, val_every=2, ckpt=str(tmp_path / run / "m.ckpt"),
                                                            progress=False), validate=lambda m: {"val_top1": next(it)}).run()
    paths = [str(tmp_path / run / "m.ckpt") for run in "ab"]
    assert main(["checkpoint", *paths, "--plot", str(tmp_path / "curves.png")]) == 0
    out = capsys.readouterr().out
    assert f"## {paths[0]}" in out and f"## {paths[1]}" in out and "| 4 | 0.500 |" in out
    assert (tmp_path / "curves.png").stat().st_size > 0
    recs = {p: checkpoint_record(p) for p in paths}
    fig = plot_records(recs)
    left, right = fig.axes  # one measure recorded: one row, against steps and against step time
    for line, p, vals in zip(left.get_lines(), paths, ([0.2, 0.4], [0.3, 0.5])):
        assert list(line.get_xdata()) == [2, 4] and list(line.get_ydata()) == vals and line.get_label() == p
    for line, p in zip(right.get_lines(), paths):
        assert np.allclose(line.get_xdata(), [step_cpu_at(recs[p], s) / 3600 for s in (2, 4)])
    with pytest.raises(SystemExit, match="one checkpoint"):
        main(["checkpoint", *paths, "--export", str(tmp_path / "x.safetensors")])
    with pytest.raises(ValueError, match="recorded a validation"):
        plot_records({"none": {"segments": [], "val_history": []}})


def test_record_markdown_marks_unmeasured_validations():
    """A measure a run added later (NaN or absent in older validations) shows as "-", not "nan"."""
    from minihash.train import record_markdown

    seg = {"start_step": 0, "end_step": 20, "step_cpu_s": 30.0, "precision": "fp32", "threads": 1, "cpu": "x"}
    vals = [{"step": 10, "val_top1": 0.5, "val_noise_0db": math.nan},
            {"step": 15, "val_top1": 0.55},
            {"step": 20, "val_top1": 0.6, "val_noise_0db": 0.4}]
    rows = record_markdown({"step": 20, "segments": [seg], "val_history": vals}, every=5).split("\n")
    assert rows[-3:] == ["| 10 | 0.500 | - |", "| 15 | 0.550 | - |", "| 20 | 0.600 | 0.400 |"]
