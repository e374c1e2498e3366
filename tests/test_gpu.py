"""Training on a GPU computes what it does on the CPU (run where PyTorch sees CUDA; skipped elsewhere).

The reference is the CPU: the same weights, batch and random draws give the same loss and gradients in
float32 (TF32 off), bf16 autocast stays within rounding, the balanced assignment agrees, and a model
trained on the GPU embeds the same on the CPU.
"""
import json
from dataclasses import replace

import pytest
import torch

from minihash.corpus import synth_tracks
from minihash.distort import DistortConfig, Distorter
from minihash.encoder import ModelConfig
from minihash.modelfile import build_model, load_model
from minihash.ot import balanced_assignment
from minihash.pairs import make_loader, training_noise
from minihash.recipe import LossConfig, fingerprint_loss
from minihash.spectrogram import MaskConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU that PyTorch can use")


@pytest.fixture(autouse=True)
def _no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def batch():
    noise = training_noise([], [], split="train")
    loader = make_loader(synth_tracks(8, 10.0), Distorter(DistortConfig(p_band=0.2), noise), batch_size=64, seed=0)
    return next(iter(loader))


def loss_and_grad(cfg, batch, device, bf16=False):
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    torch.manual_seed(1)  # the same SpecAugment masks on every device (they are drawn on the CPU)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        lcfg = LossConfig(tau=0.05, masks=MaskConfig(p=1.0))
        loss, _ = fingerprint_loss(model, tuple(x.to(device) for x in batch), lcfg)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten().double().cpu() for p in model.parameters()])


@pytest.mark.parametrize("preset, stem", [("small", "conv"), ("small", "patch"), ("nafp-small", None)])
def test_loss_and_gradients_match_the_cpu(batch, preset, stem):
    cfg = ModelConfig.preset(preset)
    cfg = replace(cfg, mel=replace(cfg.mel, n_mels=256, n_fft=1024, log="db"))
    if stem:
        cfg = replace(cfg, stem=stem, **({"stem_freq": 4} if stem == "conv" else {}))
    l_cpu, g_cpu = loss_and_grad(cfg, batch, "cpu")
    l_gpu, g_gpu = loss_and_grad(cfg, batch, "cuda")
    assert l_gpu == pytest.approx(l_cpu, rel=1e-5)
    assert torch.nn.functional.cosine_similarity(g_gpu, g_cpu, dim=0) > 0.9999
    l_bf16, g_bf16 = loss_and_grad(cfg, batch, "cuda", bf16=True)
    assert l_bf16 == pytest.approx(l_cpu, rel=0.01)
    assert torch.nn.functional.cosine_similarity(g_bf16, g_cpu, dim=0) > 0.99


def test_balanced_assignment_matches_the_cpu():
    logits = torch.randn(512, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(balanced_assignment(logits.cuda(), eps=0.1 / 16).cpu(),
                               balanced_assignment(logits, eps=0.1 / 16), rtol=1e-4, atol=1e-5)


def test_a_model_trained_on_the_gpu_embeds_alike_on_the_cpu(tmp_path):
    from minihash.cli import main

    out = tmp_path / "gpu.safetensors"
    assert main(["train", "--preset", "tiny", "--synth", "6", "--synth-seconds", "10", "--steps", "3", "--batch", "32",
                 "--masks", "1.0", "--precision", "auto", "-o", str(out)]) == 0
    x = torch.from_numpy(synth_tracks(1, 10.0, seed=7)[0][:8000 * 8].copy()).float().reshape(8, 8000)
    with torch.no_grad():
        e_cpu = load_model(out)(x)[0]
        e_gpu = load_model(out, map_location="cuda")(x.cuda())[0].cpu()
    assert torch.nn.functional.cosine_similarity(e_cpu, e_gpu).min() > 0.9999
    seg = json.loads(out.with_suffix(".json").read_text())["extra"]["train"]["segments"][-1]
    assert seg["device"].startswith("cuda")
    if torch.cuda.is_bf16_supported():  # "auto" takes bf16 there, and it passed the check against float32
        assert seg["precision"] == "bf16" and seg["bf16_check"]["ok"]
