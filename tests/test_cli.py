"""The command-line contract (`minihash index` and `minihash query`, end to end) and the package API."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import minihash
from minihash import audio, modelfile, search
from minihash.cli import main
from minihash.corpus.music import synth_tracks
from minihash.encoder import ModelConfig
from minihash.modelfile import build_model, save_model
from minihash.search import pipeline, store
from minihash.evaluate import calibrate

SR = 8000


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """An untrained tiny model (random features still tell clean excerpts apart), a folder of six
    procedural tracks, a corrupt file among them, and three query files."""
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = root / "tiny.safetensors"
    save_model(build_model(ModelConfig.preset("tiny")), model)
    refs = root / "refs"
    (refs / "album").mkdir(parents=True)
    tracks = synth_tracks(6, 20.0, seed=77)
    for i, x in enumerate(tracks):
        sf.write(refs / "album" / f"song{i}.wav", x, SR)
    (refs / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    queries = root / "queries"
    queries.mkdir()
    sf.write(queries / "song2_at_6.3.wav", tracks[2][int(6.3 * SR):int(9.3 * SR)], SR)
    sf.write(queries / "song4_at_11.25.flac", tracks[4][int(11.25 * SR):int(16.25 * SR)], SR)
    rng = np.random.default_rng(0)
    sf.write(queries / "white_noise.wav", (0.1 * rng.standard_normal(3 * SR)).astype(np.float32), SR)
    return root, model, refs, queries


def test_index_then_query(setup, capsys):
    root, model, refs, queries = setup
    assert main(["index", str(refs), "-o", str(root / "idx"), "--model", str(model), "--calibration", "50"]) == 0
    out, err = capsys.readouterr()
    assert "broken.wav" in err  # the corrupt file is skipped and named
    assert "indexed 6 tracks" in out and "no match: thresholds per query length" in out
    manifest = store.read_manifest(root / "idx")
    assert manifest["n_tracks"] == 6 and set(manifest["meta"]["thresholds"]) == {"1", "3", "5", "9"}

    files = sorted(str(p) for p in queries.iterdir())
    assert main(["query", str(root / "idx"), *files, "--json"]) == 0
    answers = {os.path.basename(a["query"]): a for a in map(json.loads, capsys.readouterr().out.splitlines())}
    assert answers["song2_at_6.3.wav"]["match"] == "album/song2.wav"
    assert abs(answers["song2_at_6.3.wav"]["offset_s"] - 6.3) <= 0.1
    assert answers["song4_at_11.25.flac"]["match"] == "album/song4.wav"
    assert abs(answers["song4_at_11.25.flac"]["offset_s"] - 11.25) <= 0.1
    assert answers["white_noise.wav"]["match"] is None  # not in the index

    assert main(["query", str(root / "idx"), files[-1]]) == 0  # plain text names the threshold it missed
    assert "no match" in capsys.readouterr().out


def test_query_holds_to_another_max_false_without_indexing_again(setup, tmp_path, capsys):
    root, model, refs, queries = setup
    idx = tmp_path / "idx"
    assert main(["index", str(refs), "-o", str(idx), "--model", str(model), "--calibration", "40"]) == 0
    out = capsys.readouterr().out
    assert "1 s: threshold" in out and "on 40 negatives (40 excerpts of the collection, each searched without" in out
    assert "(overlapping: worth the 24 that fit end to end)" in out  # 6 tracks of 20 s: 24 of 5 s excerpts
    assert "note: these negatives are excerpts of only 6 tracks" in out  # and it says the sample is narrow
    files = sorted(str(p) for p in queries.iterdir())
    enc = modelfile.load_model(model)
    windows = {f: len(enc.fingerprint_audio(audio.load(f), 0.5)[2]) for f in files}
    index = search.load_index(idx)
    for share in (0.01, 0.3, None):
        assert main(["query", str(idx), *files, "--json"] + (["--max-false", str(share)] if share else [])) == 0
        if share:
            index.set_max_false(share)  # the thresholds a fresh calibration at this share would give
        else:
            index = search.load_index(idx)  # the index on disk is unchanged
        for a in map(json.loads, capsys.readouterr().out.splitlines()):
            assert a["threshold"] == round(index.threshold_for(windows[a["query"]]), 4)
            assert (a["match"] is None) == (a["score"] < a["threshold"])
    assert main(["query", str(idx), files[0]]) == 0
    assert "threshold" in capsys.readouterr().out  # the plain text says what the score was held to
    with pytest.raises(SystemExit):  # refused before the index is read
        main(["query", str(idx), files[0], "--max-false", "2"])
    assert "--max-false: must be a share" in capsys.readouterr().err


def test_eval_nomatch_reports_and_draws(setup, tmp_path, capsys):
    root, model, refs, queries = setup
    idx, neg = tmp_path / "idx", tmp_path / "other"
    neg.mkdir()
    for i, x in enumerate(synth_tracks(2, 12.0, seed=78)):  # music that is not in the index
        sf.write(neg / f"other{i}.wav", x, SR)
    assert main(["index", str(refs), "-o", str(idx), "--model", str(model), "--calibration", "30"]) == 0
    argv = ["eval-nomatch", str(idx), "--refs", str(refs), "--negatives", str(neg), "--lengths", "1", "3",
            "--queries", "5", "--out", str(tmp_path / "rep")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| 1 s | clean |" in out and "| 3 s | noise 0 dB |" in out and "of 5 (" in out
    assert (tmp_path / "rep" / "roc.png").stat().st_size > 0 and "eval-nomatch" in (tmp_path / "rep" / "nomatch.md").read_text()
    with pytest.raises(SystemExit, match="none of the reference tracks"):
        main([*argv[:3], str(neg), *argv[4:]])


def test_query_refuses_a_damaged_index(setup, tmp_path, capsys):
    root, model, refs, queries = setup
    idx = tmp_path / "idx"
    assert main(["index", str(refs), "-o", str(idx), "--model", str(model), "--calibration", "20"]) == 0
    capsys.readouterr()
    arrays = sorted(store.current_dir(idx).glob("*.npy"))
    with open(arrays[0], "r+b") as f:
        f.truncate(os.path.getsize(arrays[0]) // 2)
    assert main(["query", str(idx), str(next(queries.iterdir()))]) == 2
    err = capsys.readouterr().err
    assert "error" in err and str(idx) in err


def test_index_of_a_folder_without_audio(tmp_path, setup, capsys):
    (tmp_path / "notes.txt").write_text("no audio here")
    assert main(["index", str(tmp_path), "-o", str(tmp_path / "idx"), "--model", str(setup[1])]) == 2
    assert "no audio files" in capsys.readouterr().err


def test_the_package_api_is_there_and_import_minihash_stays_light():
    assert minihash.load_model is modelfile.load_model and minihash.load_folder is audio.load_folder
    assert minihash.index_audio is pipeline.index_audio and minihash.query_audio is pipeline.query_audio
    assert minihash.load_index is search.load_index and "load_model" in dir(minihash)
    assert minihash.calibrate_index is calibrate.calibrate_index
    assert minihash.calibrate_on_negatives is pipeline.calibrate_on_negatives
    code = "import sys, minihash; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_command_line_lets_waiting_threads_sleep_unless_told_otherwise(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, minihash.cli, torch; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == expected, out.stderr
