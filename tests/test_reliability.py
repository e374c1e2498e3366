"""Reliability: every way found to crash, lose a track or lose the index, as a test (issue 14).

Bad input gets one line naming the path and what to do (exit code 2 for a refused index), never a
traceback; skipped inputs are always listed; replacing an index is atomic for readers, shown by a
kill at every step of a replacement (a test hook, not timing luck); a seeded fuzz of 200 damaged
copies of a small index. Tests run as root here, and root reads any file: the `deny` fixture then
makes `os.scandir` and `open` refuse the paths as well as chmod-ing them, so the same tests run.
"""
import builtins
import io
import json
import os
import shutil
import signal
import stat
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

import minihash
from minihash import cli, search
from minihash.audio import AudioFolder, scan_audio
from minihash.cli import main
from minihash.corpus.music import synth_tracks
from minihash.encoder import ModelConfig
from minihash.errors import FormatError
from minihash.modelfile import build_model, load_model, save_model
from minihash.search import load_index, store
from minihash.search.manifest import manifest_digest
from minihash.search.hash import HashIndex
from minihash.search.pipeline import calibrate_on_negatives, index_audio

SR = 8000
IS_ROOT = getattr(os, "geteuid", lambda: -1)() == 0

# ----------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny untrained model, three procedural tracks (files and an index of them), three queries."""
    root = tmp_path_factory.mktemp("rel")
    torch.manual_seed(0)
    model_file = root / "tiny.safetensors"
    save_model(build_model(ModelConfig.preset("tiny")), model_file)
    model = load_model(model_file)
    tracks = synth_tracks(3, 8.0, seed=14)
    refs = root / "refs"
    refs.mkdir()
    for i, x in enumerate(tracks):
        sf.write(refs / f"song{i}.wav", x, SR)
    qdir = root / "queries"
    qdir.mkdir()
    sf.write(qdir / "q1.wav", tracks[1][3 * SR:5 * SR], SR)
    sf.write(qdir / "q2.wav", tracks[2][int(4.5 * SR):int(7.5 * SR)], SR)
    rng = np.random.default_rng(0)
    sf.write(qdir / "noise.wav", (0.1 * rng.standard_normal(2 * SR)).astype(np.float32), SR)
    index = index_audio(model, {f"song{i}.wav": x for i, x in enumerate(tracks)},
                        meta={"model_path": str(model_file)}, progress=False)
    calibrate_on_negatives(index, model, cheap_negatives(), max_false=0.2)  # thresholds for 1, 2 and 3 windows
    index.save(root / "idx")
    return SimpleNamespace(root=root, model_file=model_file, tracks=tracks, refs=refs, idx=root / "idx",
                           queries=sorted(str(p) for p in qdir.iterdir()))


def cheap_negatives(folders=(), notes=None, **kw):
    """Stand-in for `calibration_negatives`: a few seconds of noise instead of minutes of procedural songs."""
    rng = np.random.default_rng(1)
    return [(0.1 * rng.standard_normal(int(s * SR))).astype(np.float32) for s in (1, 2, 3) for _ in range(10)]


@pytest.fixture
def cheap_calibration(monkeypatch):
    """`minihash index` calibrating on 10 excerpts per length, with noise for the procedural songs that a
    collection of one or two tracks is too small to replace."""
    from minihash.evaluate import calibrate
    monkeypatch.setattr(calibrate, "synth_tracks", lambda n, seconds, seed: cheap_negatives()[-3:])
    full = calibrate.calibrate_index
    monkeypatch.setattr(cli.commands, "calibrate_index",
                        lambda *a, **kw: full(*a, **{**kw, "per_length": 10, "lengths": (1.0, 2.0), "progress": False}))


def run(capsys, *argv):
    """`minihash ARGV...` in this process: (exit code, stdout, stderr)."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_refused(rc, out, err, path, *words):
    """Exit code 2, nothing on stdout, and one line on stderr that names `path` (and holds `words`)."""
    lines = err.strip().splitlines()
    assert rc == 2 and not out and len(lines) == 1, (rc, out, err)
    assert "Traceback" not in err and str(path) in lines[0], lines
    for w in words:
        assert w in lines[0], (w, lines[0])


def messages(err):
    """The lines of stderr that are not a progress bar."""
    return [line for line in err.splitlines() if line.startswith(("skipped ", "minihash "))]


def answers(capsys, idx, env):
    """`minihash query IDX <the three queries> --json`: (exit code, stdout, stderr, [(match, offset, score)])."""
    rc, out, err = run(capsys, "query", idx, *env.queries, "--json")
    got = [(a["match"], a["offset_s"], a["score"]) for a in map(json.loads, out.splitlines())] if rc == 0 else None
    return rc, out, err, got


def fail(*args, **kw):
    raise AssertionError("work began before the arguments were checked")


@pytest.fixture
def deny(monkeypatch):
    """deny(path): make a file or folder unreadable (chmod 000; as root, os.scandir and open refuse it too)."""
    changed, blocked = [], []

    def is_blocked(p):
        s = os.fspath(p) if isinstance(p, (str, os.PathLike)) else ""
        return any(s == b or s.startswith(b + os.sep) for b in blocked)

    if IS_ROOT:
        real_scandir, real_open = os.scandir, io.open

        def scandir(p="."):
            if is_blocked(p):
                raise PermissionError(13, "Permission denied", os.fspath(p))
            return real_scandir(p)

        def open_(f, *a, **k):
            if is_blocked(f):
                raise PermissionError(13, "Permission denied", os.fspath(f))
            return real_open(f, *a, **k)

        monkeypatch.setattr(os, "scandir", scandir)
        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)

    def deny_(p):
        changed.append((p, stat.S_IMODE(p.stat().st_mode)))
        os.chmod(p, 0)
        blocked.append(str(p))

    yield deny_
    for p, mode in reversed(changed):
        os.chmod(p, mode)


def tone(seconds=2.0, f=440.0):
    return (0.3 * np.sin(2 * np.pi * f * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def toy_index(names, seed=0, n=20):
    """A hash index of random unit vectors, n windows per name (no model: the on-disk tests need none)."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n * len(names), 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return HashIndex.build(emb, rng.standard_normal((len(emb), 6)), np.repeat(np.arange(len(names)), n),
                           np.tile(np.arange(n) * 0.1, len(names)), names, meta={"model": "toy"})


def copy_index(env, tmp_path, name="idx"):
    shutil.copytree(env.idx, tmp_path / name)
    return tmp_path / name


def rewrite_manifest(idx, edit, checksum=True):
    """Edit the manifest of the index at `idx` in place (`edit` changes the dict), then give it a
    valid checksum again, so that only the checks of its fields can catch the edit."""
    f = store.current_dir(idx) / store.MANIFEST
    m = json.loads(f.read_text())
    edit(m)
    if checksum:
        m["manifest_sha256"] = manifest_digest(m)
    f.write_text(json.dumps(m))


def to_legacy(idx):
    """Turn an index into the layout of minihash 0.1: manifest and arrays in the folder itself."""
    d = store.current_dir(idx)
    for f in d.iterdir():
        os.replace(f, idx / f.name)
    d.rmdir()
    (idx / store.POINTER).unlink()
    (idx / store.LOCK).unlink(missing_ok=True)


# ----------------------------------------------------------------------------
# 1. no track lost in silence: unreadable folders, links


def test_an_unreadable_subfolder_is_listed_not_lost(tmp_path, deny, capsys, env, cheap_calibration):
    music = tmp_path / "music"
    (music / "locked").mkdir(parents=True)
    sf.write(music / "a.wav", tone(), SR)
    sf.write(music / "locked" / "b.wav", tone(f=660.0), SR)
    deny(music / "locked")
    folder = AudioFolder(music, lazy=True, progress=False)
    assert [name for name, _ in folder.files] == ["a.wav"]
    assert [name for name, _ in folder.errors] == ["locked/"] and "permission denied" in folder.errors[0][1]
    rc, out, err = run(capsys, "index", music, "-o", tmp_path / "idx", "--model", env.model_file)
    assert rc == 0 and "skipped locked/: permission denied" in err
    assert "indexed 1 track" in out and "1 unreadable" in out


def test_an_unreadable_top_folder_is_refused_in_one_line(tmp_path, deny, capsys, env):
    music = tmp_path / "music"
    music.mkdir()
    sf.write(music / "a.wav", tone(), SR)
    deny(music)
    rc, out, err = run(capsys, "index", music, "-o", tmp_path / "idx", "--model", env.model_file)
    assert_refused(rc, out, err, music, "permission denied")


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
def test_linked_folders_are_followed_once_and_bad_links_listed(tmp_path, capsys, env, cheap_calibration):
    music, elsewhere = tmp_path / "music", tmp_path / "elsewhere"
    (music / "album").mkdir(parents=True)
    elsewhere.mkdir()
    sf.write(music / "album" / "a.wav", tone(), SR)
    sf.write(elsewhere / "b.wav", tone(f=660.0), SR)
    os.symlink(elsewhere, music / "linked")  # a linked folder: followed
    os.symlink(music, music / "album" / "up")  # a link back to the top: a loop
    os.symlink(music / "album", music / "again")  # the same folder twice: searched once
    os.symlink(tmp_path / "gone.wav", music / "dangling.wav")  # points nowhere
    os.symlink(music / "self2", music / "self1")  # two links pointing at each other
    os.symlink(music / "self1", music / "self2")
    files, skipped = scan_audio(music)
    assert [p.relative_to(music).as_posix() for p in files] == ["album/a.wav", "linked/b.wav"]
    why = dict(skipped)
    assert sorted(why) == ["again/", "album/up/", "dangling.wav", "self1", "self2"]
    assert "loop" in why["album/up/"] and "loop" in why["self1"] and "album/" in why["again/"]
    assert "broken link" in why["dangling.wav"] and "gone.wav" in why["dangling.wav"]
    rc, out, err = run(capsys, "index", music, "-o", tmp_path / "idx", "--model", env.model_file)
    assert rc == 0 and "indexed 2 tracks" in out and "5 unreadable" in out
    for name in why:
        assert f"skipped {name}: " in err


# ----------------------------------------------------------------------------
# 2. a folder where every file is bad


def test_a_folder_of_bad_files_lists_them_and_fails_cleanly(tmp_path, capsys, env):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.wav").write_bytes(b"RIFF junk")
    (bad / "y.flac").write_bytes(b"")
    sf.write(bad / "z.wav", np.zeros(2 * SR, dtype=np.float32), SR)  # silent
    rc, out, err = run(capsys, "index", bad, "-o", tmp_path / "idx", "--model", env.model_file)
    lines = messages(err)
    assert rc == 2 and "Traceback" not in err and not out
    assert [line.split(":")[0] for line in lines[:3]] == ["skipped x.wav", "skipped y.flac", "skipped z.wav"]
    assert "nothing to index" in lines[3] and "3 audio files" in lines[3] and str(bad) in lines[3] and len(lines) == 4
    assert not (tmp_path / "idx").exists()


def test_a_folder_without_audio_is_refused_cleanly(tmp_path, capsys, env):
    (tmp_path / "notes.txt").write_text("no audio here")
    rc, out, err = run(capsys, "index", tmp_path, "-o", tmp_path / "idx", "--model", env.model_file)
    assert_refused(rc, out, err, tmp_path, "no audio files")


# ----------------------------------------------------------------------------
# 3 and 7. argument checks, all before any work


@pytest.mark.parametrize("hop", ["0", "-1", "nan", "inf", "-inf", "0.001", "ten"])
@pytest.mark.parametrize("cmd", ["index", "query"])
def test_hop_is_checked_before_any_work(cmd, hop, tmp_path, capsys, monkeypatch, env):
    monkeypatch.setattr(cli.commands, "load_model", fail)
    monkeypatch.setattr(cli.commands, "load_index", fail)
    argv = ["index", env.refs, "-o", tmp_path / "i"] if cmd == "index" else ["query", env.idx, env.queries[0]]
    with pytest.raises(SystemExit) as e:
        main([*map(str, argv), f"--hop={hop}"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--hop" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["-0.1", "1", "nan"])
def test_max_false_is_checked_before_any_work(value, tmp_path, capsys, monkeypatch, env):
    monkeypatch.setattr(cli.commands, "load_model", fail)
    with pytest.raises(SystemExit) as e:
        main(["index", str(env.refs), "-o", str(tmp_path / "i"), f"--max-false={value}"])
    assert e.value.code == 2 and "--max-false" in capsys.readouterr().err


def test_out_onto_something_that_is_not_an_index_is_refused_first(tmp_path, capsys, monkeypatch, env):
    monkeypatch.setattr(cli.commands, "load_model", fail)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    rc, out, err = run(capsys, "index", env.refs, "-o", notes, "--model", env.model_file)
    assert_refused(rc, out, err, notes, "not a minihash index", "-o")
    assert os.listdir(notes) == ["todo.txt"] and (notes / "todo.txt").read_text() == "mine"
    rc, out, err = run(capsys, "index", env.refs, "-o", notes / "todo.txt", "--model", env.model_file)
    assert_refused(rc, out, err, notes / "todo.txt", "-o")


def test_out_where_nothing_can_be_written_is_refused_first(tmp_path, capsys, monkeypatch, env):
    monkeypatch.setattr(cli.commands, "load_model", fail)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == tmp_path else real_access(p, mode))
    rc, out, err = run(capsys, "index", env.refs, "-o", tmp_path / "new" / "idx", "--model", env.model_file)
    assert_refused(rc, out, err, tmp_path, "not writable")


def test_missing_negatives_or_refs_are_refused_first(tmp_path, capsys, monkeypatch, env):
    monkeypatch.setattr(cli.commands, "load_model", fail)
    rc, out, err = run(capsys, "index", env.refs, "-o", tmp_path / "idx", "--negatives", tmp_path / "nope")
    assert_refused(rc, out, err, tmp_path / "nope", "--negatives")
    rc, out, err = run(capsys, "index", tmp_path / "nope", "-o", tmp_path / "idx")
    assert_refused(rc, out, err, tmp_path / "nope", "no such")
    assert not (tmp_path / "idx").exists()


def test_skipped_negatives_are_listed(tmp_path, capsys, env, cheap_calibration):
    """The calibration's own files (`--negatives`) are listed when skipped, as the indexed ones are."""
    neg = tmp_path / "neg"
    neg.mkdir()
    sf.write(neg / "held_out.wav", env.tracks[0], SR)
    (neg / "broken.wav").write_bytes(b"junk")
    rc, out, err = run(capsys, "index", env.refs, "-o", tmp_path / "idx", "--model", env.model_file,
                       "--negatives", neg)
    assert rc == 0 and "skipped broken.wav: " in err and "1 negatives (listed on stderr)" in out
    assert "10 of --negatives" in out  # the readable one was calibrated on


# ----------------------------------------------------------------------------
# 4. manifests edited and given a valid checksum again

def _drop(*keys):
    def edit(m):
        node = m
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
    return edit


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def edit(m):
        node = m
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value(node[keys[-1]]) if callable(value) else value
    return edit


MANIFEST_EDITS = {  # each leaves a manifest with a valid checksum that is not a valid index
    "arrays entry dropped (emb)": _drop("arrays", "emb"),
    "arrays entry dropped (codes)": _drop("arrays", "codes"),
    "arrays entry dropped (track_ids)": _drop("arrays", "track_ids"),
    "an extra arrays entry": lambda m: m["arrays"].__setitem__("extra", dict(m["arrays"]["starts"])),
    "arrays not a dict": _set("arrays", ["emb.npy"]),
    "an arrays entry not a dict": _set("arrays", "emb", "emb.npy"),
    "an array's bytes a string": _set("arrays", "starts", "bytes", lambda v: str(v)),
    "an array's shape not a list": _set("arrays", "emb", "shape", 7),
    "meta not a dict (list)": _set("meta", []),
    "meta not a dict (null)": _set("meta", None),
    "meta thresholds not a dict": _set("meta", "thresholds", [0.5]),
    "a meta threshold a string": _set("meta", "thresholds", lambda t: {k: "0.5" for k in t}),
    "meta threshold null": _set("meta", "threshold", None),
    "meta calibration scores not a list": _set("meta", "calibration", "scores", 0.5),
    "a calibration negative searched in more than the index": _set("meta", "calibration", "searched",
                                                                   lambda v: [2.0] * len(v)),
    "a calibration negative worth nothing": _set("meta", "calibration", "worth", lambda v: [0.0] * len(v)),
    "calibration worths too few": _set("meta", "calibration", "worth", lambda v: v[:-1]),
    "meta model differs from model": _set("meta", "model", "someone-else"),
    "meta model_path not a string": _set("meta", "model_path", 3),
    "names not a list (string)": _set("names", "song0.wav"),
    "names not a list (dict)": _set("names", {"0": "song0.wav"}),
    "names too short": _set("names", lambda v: v[:-1]),
    "names and n_tracks too short": lambda m: m.update(names=m["names"][:-1], n_tracks=m["n_tracks"] - 1),
    "names not strings": _set("names", lambda v: list(range(len(v)))),
    "names repeated": _set("names", lambda v: [v[0]] * len(v)),
    "hop 0": _set("hop_s", 0),
    "hop -1": _set("hop_s", -1),
    "hop a string": _set("hop_s", "0.1"),
    "hop true": _set("hop_s", True),
    "D wrong": _set("D", lambda v: v + 1),
    "D 0": _set("D", 0),
    "D a string": _set("D", lambda v: str(v)),
    "K too small for the codes": _set("K", lambda v: v - 4),
    "K a float": _set("K", lambda v: v + 0.5),
    "n_windows wrong": _set("n_windows", lambda v: v + 1),
    "threshold a string": _set("threshold", "high"),
    "method unknown": _set("method", "annoy"),
    "method a list": _set("method", ["hash"]),
    "search not a dict": _set("search", 64),
    "search n_probes 0": _set("search", "n_probes", 0),
    "search with an unknown setting": _set("search", "warp", 9),
    "params not a dict": _set("params", [16]),
    "params with an unknown parameter": _set("params", "L", 4),
    **{f"{key} missing": _drop(key) for key in ("method", "D", "K", "n_windows", "n_tracks", "model", "threshold",
                                                "hop_s", "names", "params", "search", "meta", "arrays")},
}


@pytest.mark.parametrize("name", sorted(MANIFEST_EDITS))
def test_an_edited_manifest_is_refused_in_one_line(name, env, tmp_path, capsys):
    idx = copy_index(env, tmp_path)
    rewrite_manifest(idx, MANIFEST_EDITS[name])
    rc, out, err, _ = answers(capsys, idx, env)
    assert_refused(rc, out, err, idx, "not a valid index")


def test_a_faiss_index_without_faiss_says_to_install_it(env, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(search, "have_faiss", lambda: False)
    idx = copy_index(env, tmp_path)
    rewrite_manifest(idx, _set("method", "faiss"))
    rc, out, err, _ = answers(capsys, idx, env)
    assert_refused(rc, out, err, idx, "faiss", "pip install faiss-cpu")


def test_a_version_written_as_a_string_is_named_as_such(env, tmp_path, capsys):
    idx = copy_index(env, tmp_path)
    rewrite_manifest(idx, _set("version", "1"))
    rc, out, err, _ = answers(capsys, idx, env)
    assert_refused(rc, out, err, idx, "'1'", "not a whole number")
    rewrite_manifest(idx, _set("version", 2))
    rc, out, err, _ = answers(capsys, idx, env)
    assert_refused(rc, out, err, idx, "version 2", "reads version 1", "rebuild")


def test_a_broken_pointer_is_refused(env, tmp_path, capsys):
    idx = copy_index(env, tmp_path)
    (idx / store.POINTER).write_text("v-" + "0" * 32 + "\n")
    assert_refused(*answers(capsys, idx, env)[:3], idx, "not a valid index", "missing")
    (idx / store.POINTER).write_text("../../etc\n")
    assert_refused(*answers(capsys, idx, env)[:3], idx, "not a valid index")
    (idx / store.POINTER).write_bytes(b"\xff\xfe")
    assert_refused(*answers(capsys, idx, env)[:3], idx, "not a valid index")
    rc, out, err, _ = answers(capsys, tmp_path / "nowhere", env)
    assert_refused(rc, out, err, tmp_path / "nowhere", "no such index")


# ----------------------------------------------------------------------------
# 5. unreadable index; the recorded model gone


def test_an_unreadable_index_folder_is_refused_cleanly(env, tmp_path, capsys, deny):
    idx = copy_index(env, tmp_path)
    deny(idx)
    rc, out, err, _ = answers(capsys, idx, env)
    assert_refused(rc, out, err, idx, "permission denied", "chmod")


def test_an_unreadable_array_file_is_refused_cleanly(env, tmp_path, capsys, deny):
    idx = copy_index(env, tmp_path)
    f = store.current_dir(idx) / "emb.npy"
    deny(f)
    rc, out, err, _ = answers(capsys, idx, env)
    assert_refused(rc, out, err, f, "permission denied")


def test_a_recorded_model_that_is_gone_hints_at_model(env, tmp_path, capsys):
    moved = tmp_path / "models" / "tiny.safetensors"
    moved.parent.mkdir()
    shutil.copy(env.model_file, moved)
    shutil.copy(env.model_file.with_suffix(".json"), moved.with_suffix(".json"))
    idx = copy_index(env, tmp_path)
    rewrite_manifest(idx, _set("meta", "model_path", str(moved)))
    rc, _, _, before = answers(capsys, idx, env)
    assert rc == 0 and before
    moved.unlink()
    rc, out, err, _ = answers(capsys, idx, env)
    assert_refused(rc, out, err, moved, "--model")
    rc, out, err = run(capsys, "query", idx, *env.queries, "--json", "--model", env.model_file)
    assert rc == 0 and [(a["match"], a["offset_s"], a["score"]) for a in map(json.loads, out.splitlines())] == before


def test_another_model_hints_at_model(env, tmp_path, capsys):
    torch.manual_seed(1)
    other = tmp_path / "other.safetensors"
    save_model(build_model(ModelConfig.preset("tiny")), other)
    rc, out, err = run(capsys, "query", env.idx, env.queries[0], "--model", other)
    assert_refused(rc, out, err, env.idx, "another model", "--model")


# ----------------------------------------------------------------------------
# 6. replacing an index: atomic for readers, a kill at every step, leftovers removed, the umask


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill test forks")
@pytest.mark.parametrize("before", ["nothing", "an index", "a minihash 0.1 index"])
@pytest.mark.parametrize("step", store.STEPS)
def test_a_kill_at_any_step_leaves_a_complete_index(step, before, tmp_path):
    target = tmp_path / "idx"
    if before != "nothing":
        toy_index(["old1", "old2"]).save(target)
        if before == "a minihash 0.1 index":
            to_legacy(target)
    new = toy_index(["new"], seed=1)
    pid = os.fork()
    if pid == 0:  # the child: replace the index and die by SIGKILL right after `step`
        try:
            store._step = lambda name: os.kill(os.getpid(), signal.SIGKILL) if name == step else None
            new.save(target)
        finally:
            os._exit(3)  # only when the hook never fired
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    switched = store.STEPS.index(step) >= store.STEPS.index("pointer-replaced")
    if before == "nothing" and not switched:
        with pytest.raises(FormatError):
            load_index(target)
    else:
        assert load_index(target).names == (["new"] if switched else ["old1", "old2"])
    toy_index(["next"], seed=2).save(target)  # the next run removes what the killed one left
    assert load_index(target).names == ["next"]
    current = store.current_dir(target).name
    assert sorted(os.listdir(target)) == sorted([store.LOCK, store.POINTER, current])
    assert os.listdir(tmp_path) == ["idx"]


@pytest.mark.parametrize("moment", ["pointer-read", "manifest-read"])
def test_a_reader_gets_a_whole_index_while_it_is_replaced(moment, tmp_path, monkeypatch):
    target = tmp_path / "idx"
    toy_index(["a", "b"]).save(target)
    replaced = []

    def writer_strikes(name):  # after the reader read CURRENT or the manifest, a writer replaces the index
        if name == moment and not replaced:
            replaced.append(name)
            toy_index(["c"], seed=1).save(target)

    monkeypatch.setattr(store, "_step", writer_strikes)
    assert load_index(target).names == ["c"] and replaced


def test_leftovers_of_killed_runs_of_older_versions_are_removed(tmp_path):
    target = tmp_path / "idx"
    toy_index(["a"]).save(target)
    dead = tmp_path / f".idx.99999999.{uuid.uuid4().hex}.tmp"  # no process has this id: a killed run's
    live = tmp_path / f".idx.{os.getpid()}.{uuid.uuid4().hex}.tmp"  # a running writer's: kept
    for d in (dead, live):
        d.mkdir()
        (d / "manifest.json").write_text("{}")
    toy_index(["b"]).save(target)
    assert sorted(os.listdir(tmp_path)) == sorted(["idx", live.name])


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_index_folders_and_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        toy_index(["a"]).save(tmp_path / "idx")
        toy_index(["b"]).save(tmp_path / "idx")  # a replacement too
    finally:
        os.umask(old)
    paths = [tmp_path / "idx", *(tmp_path / "idx").rglob("*")]
    assert len(paths) == 9  # the folder, its lock and pointer, one version folder: a manifest and 4 arrays
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) == (0o777 if p.is_dir() else 0o666) & ~umask, p


# ----------------------------------------------------------------------------
# smaller: --version, file names holding a newline


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"minihash {minihash.__version__}"


def test_file_names_holding_a_newline_stay_on_one_line(tmp_path, capsys, env, cheap_calibration):
    music = tmp_path / "music"
    music.mkdir()
    sf.write(music / "two\nlines.wav", env.tracks[0], SR)
    (music / "bad\nfile.wav").write_bytes(b"junk")
    rc, out, err = run(capsys, "index", music, "-o", tmp_path / "idx", "--model", env.model_file)
    assert rc == 0 and out.startswith("indexed 1 track")
    # that line, the no-match summary's head, a line per length (two here), the few-tracks note, the time
    assert out.count("\n") == 6 and "excerpts of only 1 track," in out
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith("skipped")] == ["skipped bad\\nfile.wav"]
    q = tmp_path / "a\nquery.wav"
    sf.write(q, env.tracks[0][2 * SR:5 * SR], SR)
    assert not any(line.startswith("file.wav") for line in err.splitlines())
    junk = tmp_path / "not\naudio.wav"
    junk.write_bytes(b"junk")
    rc, out, err = run(capsys, "query", tmp_path / "idx", q, junk)
    assert rc == 0 and out.count("\n") == 1 and out.startswith(f"{tmp_path}/a\\nquery.wav: two\\nlines.wav at ")
    assert err.count("\n") == 1 and err.startswith(f"{tmp_path}/not\\naudio.wav: error: ")
    rc, out, err = run(capsys, "query", tmp_path / "idx", q, "--json")
    assert rc == 0 and json.loads(out)["match"] == "two\nlines.wav" and json.loads(out)["query"] == str(q)


# ----------------------------------------------------------------------------
# the fuzz: 200 damaged copies of a small index


def _nodes(m, path=()):
    """Every (path, value) under the manifest's top level, dicts and lists walked."""
    items = m.items() if isinstance(m, dict) else enumerate(m) if isinstance(m, list) else []
    for k, v in items:
        yield path + (k,), v
        yield from _nodes(v, path + (k,))


def _kind(v):
    return "number" if type(v) in (int, float) else type(v).__name__


OTHER_VALUES = [None, True, 0, -1, 2.5, "x", "", [], [1], {}, {"a": 1}]


def damage(rng, idx) -> str:
    """One random damage to the index at `idx`, described: a byte of a file changed, a file
    truncated, or an edit of the manifest's structure (a key deleted, a value of another JSON kind),
    its checksum left stale or made valid again. An edit of a value into another valid value of its
    kind (a threshold, a name) makes another index, not a damaged one: it is not fuzzed."""
    files = sorted(p for p in idx.rglob("*") if p.is_file() and p.stat().st_size > 0)
    kind = rng.choice(["flip", "truncate", "edit"], p=[0.45, 0.2, 0.35])
    if kind != "edit":
        f = files[rng.integers(len(files))]
        b = bytearray(f.read_bytes())
        i = int(rng.integers(len(b)))
        if kind == "flip":
            b[i] ^= int(rng.integers(1, 256))
        f.write_bytes(bytes(b if kind == "flip" else b[:i]))
        return f"{kind} {f.relative_to(idx)} at byte {i}"
    m = json.loads((store.current_dir(idx) / store.MANIFEST).read_text())
    nodes = [(p, v) for p, v in _nodes(m) if p != ("manifest_sha256",)]
    path, value = nodes[rng.integers(len(nodes))]
    others = [v for v in OTHER_VALUES if _kind(v) != _kind(value)]
    new = None if rng.random() < 0.3 else others[rng.integers(len(others))]
    checksum = bool(rng.random() < 0.8)

    def edit(m):
        node = m
        for k in path[:-1]:
            node = node[k]
        if new is None and isinstance(node, dict) and rng.random() < 0.5:
            del node[path[-1]]
        else:
            node[path[-1]] = new

    rewrite_manifest(idx, edit, checksum)
    return f"edit {'/'.join(map(str, path))} -> {new!r}{' (re-checksummed)' if checksum else ''}"


def test_fuzz_every_damage_is_refused_in_one_line_or_changes_nothing(env, tmp_path, capsys):
    rc, _, err, before = answers(capsys, env.idx, env)
    assert rc == 0 and [m for m, _, _ in before] == [None, "song1.wav", "song2.wav"], before
    rng = np.random.default_rng(14)
    outcomes = {"refused": 0, "same answers": 0}
    for i in range(200):
        idx = copy_index(env, tmp_path, f"fuzz{i}")
        what = damage(rng, idx)
        rc, out, err, got = answers(capsys, idx, env)
        if rc == 0:
            assert got == before, (i, what)
            outcomes["same answers"] += 1
        else:
            assert_refused(rc, out, err, idx)
            outcomes["refused"] += 1
        shutil.rmtree(idx)
    print(f"fuzz: {outcomes}")
    assert sum(outcomes.values()) == 200
