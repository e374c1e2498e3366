"""Tests of minihash.encoder and minihash.nafp (shapes, the attention against PyTorch's, invariances) and of
minihash.modelfile (model files)."""
import hashlib
import json
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minihash import modelfile
from minihash.encoder import (PRESETS, Fingerprinter, ModelConfig, PatchEmbed, SelfAttention, count_parameters,
                              normalize_window)
from minihash.errors import FormatError
from minihash.modelfile import build_model, load_model, save_model
from minihash.nafp import ConvEncoder
from minihash.spectrogram import MelConfig

torch.set_num_threads(1)


def _music(B=2, T=8000, seed=0):
    """Windows of a few decaying harmonic notes over a little noise: spectrally structured, like music."""
    g = np.random.default_rng(seed)
    t = np.arange(T) / 8000
    X = np.zeros((B, T))
    for b in range(B):
        for _ in range(6):
            f0, t0 = g.uniform(200, 900), g.uniform(0, 0.8)
            env = np.where(t >= t0, np.exp(-(t - t0) * g.uniform(2, 8)), 0.0)
            X[b] += env * sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 5))
        X[b] += 0.01 * g.standard_normal(T)
    return torch.tensor(0.3 * X / np.abs(X).max(), dtype=torch.float32)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model(ModelConfig.preset("tiny")).eval()


@pytest.fixture(scope="module")
def cnn():  # NAFP's layout with few channels, so the tests stay fast
    torch.manual_seed(0)
    return build_model(ModelConfig.preset("nafp", width=16)).eval()


# ---- shapes, sizes, configs

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_shapes_and_unit_norm(name):
    cfg = ModelConfig.preset(name)
    model = build_model(cfg)
    assert isinstance(model, ConvEncoder if cfg.arch == "cnn" else Fingerprinter)
    emb, logits = model(_music(2))
    assert emb.shape == (2, cfg.emb_dim) and logits.shape == (2, cfg.K)
    np.testing.assert_allclose(emb.norm(dim=1).detach().numpy(), 1.0, rtol=1e-5)
    assert torch.isfinite(logits).all()


def test_normalize_window_matches_torch_std():
    S = torch.randn(7, 64, 101) * 3 - 5  # log-mel-like: far from zero mean
    ref = (S - S.mean(dim=(1, 2), keepdim=True)) / (S.std(dim=(1, 2), keepdim=True) + 1e-5)
    out = normalize_window(S)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.allclose(out.mean(dim=(1, 2)), torch.zeros(7), atol=1e-5)


def test_window_geometry():
    cfg = ModelConfig.preset("small")
    assert (cfg.n_samples, cfg.n_frames, cfg.n_tokens) == (8000, 101, 10)
    nafp = ModelConfig.preset("nafp")
    assert (nafp.mel.n_mels, nafp.n_frames) == (256, 32)  # NAFP's 256 x 32 input image


def test_small_is_under_10_mb(tmp_path):
    model = build_model(ModelConfig.preset("small"))
    assert count_parameters(model) * 4 < 10e6
    save_model(model, tmp_path / "small.safetensors")
    assert (tmp_path / "small.safetensors").stat().st_size < 10e6


def test_config_round_trip_and_validation():
    for name in PRESETS:
        cfg = ModelConfig.preset(name)
        assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert ModelConfig.preset("tiny", K=8).K == 8
    assert ModelConfig.preset("nafp").mel is not ModelConfig.preset("nafp").mel  # presets are not shared objects
    with pytest.raises(ValueError, match="unknown preset"):
        ModelConfig.preset("huge")
    with pytest.raises(ValueError, match="heads"):
        ModelConfig.preset("tiny", heads=5)
    with pytest.raises(ValueError, match="arch"):
        ModelConfig(arch="rnn")


def test_wrong_window_length_is_refused(tiny):
    with pytest.raises(ValueError, match="8000"):
        tiny(torch.zeros(2, 7999))


# ---- the transformer against references

def test_attention_equals_pytorch_multihead_attention():
    torch.manual_seed(1)
    D, h = 64, 4
    attn = SelfAttention(D, h).eval()
    mha = nn.MultiheadAttention(D, h, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.qkv.weight)
        mha.in_proj_bias.copy_(attn.qkv.bias)
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
        x = torch.randn(3, 10, D)
        y_hand, A = attn(x, return_attn=True)  # by hand: softmax(q k^T / sqrt(d)) v
        y_fused, _ = attn(x)  # F.scaled_dot_product_attention
        y_ref, A_ref = mha(x, x, x, average_attn_weights=False)
    np.testing.assert_allclose(y_hand.numpy(), y_ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(y_fused.numpy(), y_ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(A.numpy(), A_ref.numpy(), atol=1e-6)


def test_patch_embed_equals_conv2d():
    cfg = ModelConfig.preset("tiny")
    pe = PatchEmbed(cfg)
    M, P = cfg.mel.n_mels, cfg.patch_frames
    conv = nn.Conv2d(1, cfg.width, (M, P), stride=(M, P))
    with torch.no_grad():
        conv.weight.copy_(pe.proj.weight.view(cfg.width, 1, M, P))
        conv.bias.copy_(pe.proj.bias)
        S = torch.randn(2, M, 101)
        ref = conv(S.unsqueeze(1)).squeeze(2).transpose(1, 2)  # (B, width, 1, N) -> (B, N, width)
        np.testing.assert_allclose(pe(S).numpy(), ref.numpy(), atol=1e-5)


def test_attention_maps(tiny):
    x = _music(2)
    A = tiny.attention_maps(x)
    cfg = tiny.cfg
    assert A.shape == (2, cfg.depth, cfg.heads, cfg.n_tokens, cfg.n_tokens)
    np.testing.assert_allclose(A.sum(-1).numpy(), 1.0, atol=1e-5)
    with torch.no_grad():  # the hand-written path gives the same outputs as the fused one
        e1, l1 = tiny(x)
        e2, l2, _ = tiny.encode_mel(tiny.frontend(x), return_attn=True)
    np.testing.assert_allclose(e1.numpy(), e2.numpy(), atol=1e-5)
    np.testing.assert_allclose(l1.numpy(), l2.numpy(), atol=1e-5)


# ---- invariances and training

@pytest.mark.parametrize("which", ["tiny", "cnn"])
def test_loudness_invariance(which, request):
    model = request.getfixturevalue(which)
    x = _music(4, seed=3)
    with torch.no_grad():
        e1, l1 = model(x)
        e2, l2 = model(0.1 * x)  # 20 dB quieter
        e3, l3 = model(_music(4, seed=4))
    cos = (e1 * e2).sum(1)
    # not 1: the front end's log(power + eps) floor is not scale-free; ~0.96 without normalize_window
    assert cos.min() > 0.995
    assert (e1 * e3).sum(1).max() < cos.min()  # other audio is further away: the check has teeth
    rel = lambda a, b: ((a - b).norm() / a.norm()).item()  # noqa: E731
    assert rel(l1, l2) < 0.2 < rel(l1, l3)


@pytest.mark.parametrize("name", ["tiny", "nafp"])
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = build_model(ModelConfig.preset(name, width=16) if name == "nafp" else ModelConfig.preset(name))
    emb, logits = model(_music(3))
    (emb * torch.randn_like(emb)).sum().backward(retain_graph=True)
    (logits * torch.randn_like(logits)).sum().backward()
    for k, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, k


def test_fingerprint_batches_like_forward(tiny):
    x = _music(5)
    tiny.train()
    emb, logits = tiny.fingerprint(x.numpy(), batch_size=2)
    assert tiny.training  # the mode is restored
    tiny.eval()
    with torch.no_grad():
        e, l = tiny(x)
    assert emb.dtype == np.float32 and emb.shape == (5, 128) and logits.shape == (5, 16)
    np.testing.assert_allclose(emb, e.numpy(), atol=1e-5)
    np.testing.assert_allclose(logits, l.numpy(), atol=1e-5)
    e0, l0 = tiny.fingerprint(np.zeros((0, 8000), np.float32))
    assert e0.shape == (0, 128) and l0.shape == (0, 16)


# ---- model files

def _forge_json(path, **changes):
    """Rewrite the JSON beside `path` to vouch for whatever `path` now holds (as an attacker could)."""
    j = path.with_suffix(".json")
    meta = json.loads(j.read_text())
    meta.update(sha256=hashlib.sha256(path.read_bytes()).hexdigest(), size=path.stat().st_size, **changes)
    j.write_text(json.dumps(meta))


@pytest.mark.parametrize("which", ["tiny", "cnn"])
def test_save_load_round_trip(which, request, tmp_path):
    model = request.getfixturevalue(which)
    p = save_model(model, tmp_path / "sub" / "m.safetensors", extra={"note": "hi"})
    meta = json.loads(p.with_suffix(".json").read_text())
    assert meta["extra"] == {"note": "hi"} and meta["format_version"] == modelfile.FORMAT_VERSION
    assert [f.name for f in p.parent.iterdir() if f.suffix == ".tmp"] == []
    loaded = load_model(p)
    assert not loaded.training and loaded.cfg == model.cfg
    x = _music(3)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x)):
            assert torch.equal(a, b)


@pytest.fixture()
def saved(tiny, tmp_path):
    return save_model(tiny, tmp_path / "m.safetensors")


def test_truncated_file_is_refused(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="truncated"):
        load_model(saved)


def test_tampered_byte_is_refused(saved):
    data = bytearray(saved.read_bytes())
    data[len(data) - 100] ^= 0x01
    saved.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="checksum"):
        load_model(saved)


def test_random_bytes_are_refused(saved):
    saved.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(FormatError, match="truncated"):  # shorter than the JSON says
        load_model(saved)
    _forge_json(saved)
    with pytest.raises(FormatError, match="not a safetensors file"):
        load_model(saved)


@pytest.mark.parametrize("change, reason", [(dict(K=8), "wrong shape"), (dict(depth=3), "wrong keys"),
                                             (dict(arch="cnn", width=16, depth=8), "wrong keys")])
def test_weights_of_another_config_are_refused(saved, change, reason):
    cfg = ModelConfig.preset("tiny", **change)
    _forge_json(saved, config=cfg.to_dict())
    with pytest.raises(FormatError, match=reason):
        load_model(saved)


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):  # unpickling this creates the marker file
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_pickle_renamed_safetensors_is_refused_unopened(saved, tmp_path, how):
    marker = tmp_path / "unpickled"
    payload = {"evil": _Evil(marker)}
    if how == "torch.save":
        torch.save(payload, saved)
    else:
        saved.write_bytes(pickle.dumps(payload))
    with pytest.raises(FormatError, match="truncated"):  # shorter than the JSON says
        load_model(saved)
    _forge_json(saved)
    with pytest.raises(FormatError, match="pickle"):
        load_model(saved)
    assert not marker.exists()


def test_other_format_version_is_refused(saved):
    _forge_json(saved, format_version=999)
    with pytest.raises(FormatError, match="version 999"):
        load_model(saved)


def test_foreign_or_missing_json_is_refused(saved):
    j = saved.with_suffix(".json")
    j.write_text("[1, 2]")
    with pytest.raises(FormatError, match="not a minihash model"):
        load_model(saved)
    j.write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        load_model(saved)
    j.unlink()
    with pytest.raises(FormatError, match="missing"):
        load_model(saved)
    with pytest.raises(FormatError, match="no such"):
        load_model(saved.with_name("absent.safetensors"))


def test_missing_shipped_model_says_how_to_train(monkeypatch, tmp_path):
    monkeypatch.setattr(modelfile, "SHIPPED", tmp_path / "models" / "small.safetensors")
    with pytest.raises(FormatError, match="minihash train --preset small"):
        load_model()


def test_shipped_model_loads(monkeypatch, saved):
    monkeypatch.setattr(modelfile, "SHIPPED", saved)
    assert isinstance(load_model(), Fingerprinter)
    import minihash  # the package-level entry point of the README

    assert minihash.load_model().model_id == load_model(saved).model_id
    with pytest.raises(AttributeError, match="no attribute 'load_mdoel'"):
        minihash.load_mdoel


def test_invalid_config_in_json_is_refused(saved):
    _forge_json(saved, config={"arch": "rnn"})
    with pytest.raises(FormatError, match="invalid model config"):
        load_model(saved)


# ---- the convolutional stem and the dB front end


def test_conv_stem_tokens_and_shapes():
    cfg = ModelConfig.preset("tiny", stem="conv")
    assert cfg.n_tokens == 13  # 101 frames -> 51 -> 26 -> 13
    assert ModelConfig.preset("tiny", stem="conv", stem_bands=2).n_tokens == 26
    with pytest.raises(ValueError, match="bands"):
        ModelConfig.preset("tiny", stem="conv", stem_bands=3)
    with pytest.raises(ValueError, match="stem"):
        ModelConfig.preset("tiny", stem="cnn")
    for bands in (1, 2):
        model = build_model(ModelConfig.preset("tiny", stem="conv", stem_bands=bands)).eval()
        e, l = model(_music(3))
        assert e.shape == (3, 128) and l.shape == (3, 16)
        torch.testing.assert_close(e.norm(dim=1), torch.ones(3))


def test_conv_stem_strides_a_finer_front_end_in_frequency():
    from minihash.encoder import ConvStem

    mel = MelConfig(n_fft=1024, n_mels=256)
    cfg = ModelConfig.preset("tiny", stem="conv", stem_freq=4, mel=mel)
    assert cfg.stem_rows == 8 and cfg.n_tokens == 13  # 256 bands -> 32 -> 16 -> 8 rows, as 64 bands give
    assert ModelConfig.preset("tiny", stem="conv", stem_freq=3, mel=MelConfig(n_mels=100)).stem_rows == 5  # 17, 9, 5
    with pytest.raises(ValueError, match="stem_freq"):
        ModelConfig.preset("tiny", stem="conv", stem_freq=0)
    with pytest.raises(ValueError, match="stem_freq"):  # the patch stem has no first convolution to stride
        ModelConfig.preset("tiny", stem="patch", stem_freq=4)
    torch.manual_seed(0)
    stem = ConvStem(cfg).eval()
    first = stem.convs[0]
    assert first.kernel_size == (9, 3) and first.stride == (8, 2)
    S = torch.randn(2, 256, 101)
    # the first layer against a naive sum: band r of the output sees input bands 8r-4 .. 8r+4, time 2t-1 .. 2t+1
    x = F.pad(S, (1, 1, 4, 4))
    r, t, c = 5, 7, 3
    want = (first.weight[c, 0] * x[:, 8 * r:8 * r + 9, 2 * t:2 * t + 3]).sum((1, 2))
    torch.testing.assert_close(first(S.unsqueeze(1))[:, c, r, t], want)
    assert stem(S).shape == (2, 13, cfg.width)
    model = build_model(cfg).eval()
    e, l = model(_music(2))
    assert e.shape == (2, 128) and l.shape == (2, 16)


def test_conv_stem_equals_a_naive_reference():
    from minihash.encoder import ConvStem

    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", stem="conv", stem_bands=2)
    stem = ConvStem(cfg).eval()
    S = torch.randn(2, 64, 101)
    x = S.unsqueeze(1)
    for layer in stem.convs:
        x = layer(x)
    B, C, Fp, Tp = x.shape
    rows = Fp // 2
    want = torch.stack([torch.stack([stem.proj(x[b, :, band * rows:(band + 1) * rows, t].reshape(-1))
                                     for band in range(2) for t in range(Tp)]) for b in range(B)])
    torch.testing.assert_close(stem(S), want)


@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_db_front_end_slices_like_windows(stem):
    """fingerprint_audio cuts windows out of one log-mel of the whole signal; with the dB front end
    each window is floored under its own maximum, as when it is fingerprinted on its own."""
    from minihash.audio import segment
    from minihash.spectrogram import prepare_window

    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", stem=stem)
    cfg = ModelConfig.from_dict({**cfg.to_dict(), "mel": {**cfg.to_dict()["mel"], "log": "db"}})
    model = build_model(cfg).eval()
    x = _music(1, T=24000)[0].numpy()
    e, _, _ = model.fingerprint_audio(x, hop_s=0.5)
    e2, _ = model.fingerprint(segment(x, 8000, 1.0, 0.5)[0])
    assert (e * e2).sum(1).min() > 0.99  # the same up to the STFT's edge frames (context, not reflection)
    S = 10 * torch.randn(3, 64, 101)
    S[1] -= 90  # a window 90 dB down keeps its own 80 dB of range
    P = prepare_window(S, cfg.mel)
    for b in range(3):
        torch.testing.assert_close(P[b], prepare_window(S[b:b + 1], cfg.mel)[0])
    assert float(P[1].std()) > 0.99


def test_model_files_without_stem_fields_load_as_patch(saved):
    meta = json.loads(saved.with_suffix(".json").read_text())
    for k in ("stem", "stem_channels", "stem_bands", "stem_freq"):
        meta["config"].pop(k, None)
    saved.with_suffix(".json").write_text(json.dumps(meta))
    assert load_model(saved).cfg.stem == "patch"


def test_model_files_follow_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = save_model(build_model(ModelConfig.preset("tiny")), tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 == stat.S_IMODE(path.with_suffix(".json").stat().st_mode)
