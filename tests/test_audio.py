"""audio.py against references: soundfile round trips, scipy resampling, naive windowing."""
import os

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from minihash import AudioError
from minihash.audio import SR, AudioFolder, decoded_path, find_audio, load, load_folder, segment
from minihash.files import map_npy


def tone(seconds=2.0, sr=SR, f=440.0):
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)


@pytest.mark.parametrize("ext,fmt", [(".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG")])
def test_load_formats_round_trip(tmp_path, ext, fmt):
    x = tone()
    p = tmp_path / f"a{ext}"
    sf.write(p, x, SR, format=fmt)
    y = load(p)
    assert y.dtype == np.float32 and y.ndim == 1 and abs(len(y) - len(x)) <= 1
    if fmt != "OGG":  # lossless
        np.testing.assert_allclose(y, x, atol=1e-4)
    else:
        assert np.corrcoef(y[: len(x)], x[: len(y)])[0, 1] > 0.99


def test_stereo_44k_is_downmixed_and_resampled_like_scipy(tmp_path):
    sr_in = 44100
    t = np.arange(sr_in * 2) / sr_in
    left = np.sin(2 * np.pi * 300 * t)
    right = 0.5 * np.sin(2 * np.pi * 700 * t)
    p = tmp_path / "st.wav"
    sf.write(p, np.stack([left, right], 1).astype(np.float32), sr_in, subtype="FLOAT")
    y = load(p)
    ref = resample_poly((left + right) / 2, 80, 441)
    assert abs(len(y) - len(ref)) <= 1
    n = min(len(y), len(ref))
    mid = slice(400, n - 400)  # filters differ at the edges only
    assert np.max(np.abs(y[mid] - ref[mid])) < 0.02


def test_errors_name_the_file_and_reason(tmp_path):
    cases = {}
    cases["missing.wav"] = None
    (tmp_path / "empty.wav").write_bytes(b"")
    cases["empty.wav"] = "empty"
    (tmp_path / "text.wav").write_text("this is not audio\n" * 20)
    cases["text.wav"] = "unreadable"
    (tmp_path / "corrupt.flac").write_bytes(np.random.default_rng(0).bytes(5000))
    cases["corrupt.flac"] = "unreadable"
    sf.write(tmp_path / "silent.wav", np.zeros(SR, np.float32), SR)
    cases["silent.wav"] = "silent"
    sf.write(tmp_path / "short.wav", tone(0.2), SR)
    cases["short.wav"] = "too short"
    sf.write(tmp_path / "nan.wav", np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
    cases["nan.wav"] = "NaN"
    for name, reason in cases.items():
        with pytest.raises(AudioError) as e:
            load(tmp_path / name)
        assert name in str(e.value)
        assert (reason or "no such file") in e.value.reason


def test_load_folder_skips_and_reports(tmp_path):
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "good.wav", tone(), SR)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.wav").write_text("hello")
    (tmp_path / "corrupt.ogg").write_bytes(b"OggS" + bytes(300))
    (tmp_path / "readme.txt").write_text("ignored: not an audio extension")
    tracks, errors = load_folder(tmp_path, progress=False)
    assert list(tracks) == ["sub/good.wav"]
    assert sorted(n for n, _ in errors) == ["corrupt.ogg", "empty.wav", "notes.wav"]
    assert [p.name for p in find_audio(tmp_path)] == ["corrupt.ogg", "empty.wav", "notes.wav", "good.wav"]


# ----------------------------------------------------------------------------
# AudioFolder: the one folder loader


def test_audio_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "music"
    (root / "sub").mkdir(parents=True)
    good = 0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * SR) / SR).astype(np.float32)
    sf.write(root / "good.wav", good, SR)
    (root / "sub" / "copy.wav").write_bytes((root / "good.wav").read_bytes())
    sf.write(root / "b.flac", 0.2 * rng.standard_normal(3 * 16000).astype(np.float32), 16000)
    (root / "corrupt.wav").write_bytes(rng.bytes(4000))
    (root / "empty.wav").write_bytes(b"")
    (root / "text.wav").write_text("this is not audio\n" * 50)
    (root / "notes.txt").write_text("not listed: not an audio extension")

    af = AudioFolder(root, progress=False)
    assert af.names == ["b.flac", "good.wav"]
    assert len(af) == 2 and len(af.tracks) == 2
    assert af[1].shape == (2 * SR,) and af[0].shape == (3 * SR,)  # the flac is resampled to 8 kHz
    np.testing.assert_allclose(af[1], good, atol=1e-4)
    assert af.duplicates == [("sub/copy.wav", "good.wav")]
    assert sorted(name for name, _ in af.errors) == ["corrupt.wav", "empty.wav", "text.wav"]
    assert all(reason for _, reason in af.errors)
    text = af.summary()
    assert "2 tracks" in text and "corrupt.wav" in text and "sub/copy.wav" in text and "empty" in text


def test_load_folder_lists_a_copy_as_skipped(tmp_path):
    sf.write(tmp_path / "a.wav", tone(), SR)
    (tmp_path / "b.wav").write_bytes((tmp_path / "a.wav").read_bytes())
    tracks, errors = load_folder(tmp_path, progress=False)
    assert list(tracks) == ["a.wav"] and errors == [("b.wav", "same bytes as a.wav")]


def test_a_lazy_folder_reads_in_stream_only(tmp_path):
    sf.write(tmp_path / "a.wav", tone(), SR)
    (tmp_path / "bad.wav").write_bytes(b"")
    folder = AudioFolder(tmp_path, progress=False, lazy=True)
    assert [name for name, _ in folder.files] == ["a.wav", "bad.wav"] and len(folder) == 0 and not folder.errors
    assert [name for name, _ in folder.stream()] == ["a.wav"]
    assert [name for name, _ in folder.errors] == ["bad.wav"]


def test_segment_matches_naive_loop():
    x = np.random.default_rng(1).standard_normal(int(3.37 * SR)).astype(np.float32)
    w, starts = segment(x, win_s=1.0, hop_s=0.1)
    naive = [(x[i : i + SR], i / SR) for i in range(0, len(x) - SR + 1, SR // 10)]
    assert w.shape == (len(naive), SR)
    for k, (win, s) in enumerate(naive):
        np.testing.assert_array_equal(w[k], win)
        assert starts[k] == pytest.approx(s)


def test_segment_pads_short_input_and_accepts_torch():
    import torch

    w, starts = segment(np.ones(SR // 2, np.float32), win_s=1.0, hop_s=0.5)
    assert w.shape == (1, SR) and w[0, : SR // 2].sum() == SR // 2 and w[0, SR // 2 :].sum() == 0
    wt, _ = segment(torch.ones(2 * SR), hop_s=0.5)
    assert isinstance(wt, torch.Tensor) and wt.shape == (3, SR)
    with pytest.raises(ValueError):
        segment(np.ones((2, SR)))


# ---- the decode cache


def test_second_load_comes_from_the_decode_cache(tmp_path, monkeypatch):
    p = tmp_path / "a.flac"
    sf.write(p, tone(), SR, format="FLAC")
    first = load(p)
    monkeypatch.setattr(sf, "read", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("decoded twice")))
    np.testing.assert_array_equal(load(p), first)  # from the cache: soundfile is not called again
    with pytest.raises(AudioError, match="decoded twice"):
        load(p, cache=False)


def test_an_edited_file_is_decoded_again(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, tone(f=440.0), SR)
    load(p)
    sf.write(p, tone(seconds=3.0, f=880.0), SR)  # new size and mtime: a new key
    np.testing.assert_allclose(load(p), tone(seconds=3.0, f=880.0), atol=1e-4)


def test_a_corrupt_cache_file_is_ignored_and_rewritten(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, tone(), SR)
    x = load(p)
    f = decoded_path(p)
    f.write_bytes(f.read_bytes()[:100])  # truncated
    np.testing.assert_array_equal(load(p), x)
    np.testing.assert_array_equal(np.load(f), x)  # written again, whole


def test_cached_audio_is_checked_like_decoded_audio(tmp_path):
    p = tmp_path / "short.wav"
    sf.write(p, tone(seconds=1.0), SR)
    load(p)
    with pytest.raises(AudioError, match="too short"):
        load(p, min_s=2.0)  # the cache holds the samples; the checks run on every load


# ---- tracks mapped from the decode cache


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc")
def test_mapped_tracks_equal_loaded_ones_and_hold_no_open_file(tmp_path):
    paths = []
    for i in range(40):
        paths.append(tmp_path / f"t{i:02d}.wav")
        sf.write(paths[-1], tone(seconds=1.0 + i / 40, f=200.0 + 10 * i), SR)
    loaded = [load(p) for p in paths]  # decoded once, into the cache
    before = open_files()
    mapped = [load(p, mmap=True) for p in paths]
    assert open_files() == before  # np.load(mmap_mode="r") would hold 40 descriptors
    for x, y in zip(loaded, mapped):
        np.testing.assert_array_equal(x, y)
        assert not y.flags.writeable and not y.flags.owndata
    with pytest.raises(ValueError):
        mapped[0][0] = 1.0  # read-only: the cache file cannot be changed through a track
    folder = AudioFolder(tmp_path, mmap=True, progress=False)
    assert folder.names == [p.name for p in paths] and not folder.tracks[3].flags.writeable
    np.testing.assert_array_equal(folder.tracks[3], loaded[3])


def test_map_npy_refuses_what_is_not_a_whole_float32_vector(tmp_path):
    good = tmp_path / "a.npy"
    np.save(good, np.arange(1000, dtype=np.float32))
    np.testing.assert_array_equal(map_npy(good), np.arange(1000, dtype=np.float32))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:-400])  # shorter than its header says
    with pytest.raises(ValueError):
        map_npy(cut)
    for bad in (np.arange(10, dtype=np.float64), np.zeros((3, 4), np.float32)):
        np.save(tmp_path / "b.npy", bad)
        with pytest.raises(ValueError, match="float32 vector"):
            map_npy(tmp_path / "b.npy")
    f = tmp_path / "x.wav"  # a cache file that cannot be mapped is decoded again, as a damaged one is
    sf.write(f, tone(), SR)
    x = load(f)
    decoded_path(f).write_bytes(decoded_path(f).read_bytes()[:300])
    np.testing.assert_array_equal(load(f, mmap=True), x)
