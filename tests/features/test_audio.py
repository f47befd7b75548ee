"""Audio shards end to end: per-item equality, bad wavs, float16 storage, leftovers."""

from __future__ import annotations

import os
import signal
import time

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile

from tests.helpers.features import AUDIO, FRAMES, build_plan, extract_audio, make_corpus
from vgsalign.cli import run_main
from vgsalign.errors import InputError
from vgsalign.features import audio as features_audio
from vgsalign.features import shards
from vgsalign.features.logmel import GridSettings, LogMelSettings, load_audio, logmel_librosa, place_on_grid
from vgsalign.settings import settings_from_dict


def test_audio_shard_matches_per_item_extraction(tmp_path):
    corpus = make_corpus(tmp_path, n_images=6)
    paths = build_plan(tmp_path, corpus)
    out = tmp_path / "audio" / "shard_00001.h5"
    assert extract_audio(paths, 1, out) == 0
    captions = pd.read_csv(paths["captions"], dtype={"utt_id": str})
    expected = captions[captions["shard"] == 1]
    audio = settings_from_dict(LogMelSettings, AUDIO, section="audio")
    grid = GridSettings(**FRAMES)
    with h5py.File(out, "r") as h5:
        assert [u.decode() for u in h5["utt_id"][...]] == expected["utt_id"].tolist()
        assert h5["image_id"][...].tolist() == expected["image_id"].tolist()
        assert h5["logmel"].shape == (4, 128, 40) and h5["logmel"].dtype == np.float32
        for row, wav in enumerate(expected["wav"]):
            signal = load_audio(wav, 16000)
            matrix, n_frames, pad = place_on_grid(features_audio.logmel_of(signal, audio), grid)
            assert np.array_equal(h5["logmel"][row], matrix)
            reference, _, _ = place_on_grid(logmel_librosa(signal, audio), grid)
            # within 60 dB of the peak the two agree to float32 rounding; near the -100 dB
            # floor (over 100 dB below the peak) rounding of the tiny mel energies moves the
            # log by a few hundredths of a dB (up to 0.028 measured with librosa 0.11, numpy 2.4)
            difference = np.abs(h5["logmel"][row] - reference)
            loud = reference > reference.max() - 60
            assert difference[loud].max() < 1e-4
            assert difference.max() < 0.05
            assert (h5["n_frames"][row], h5["pad_frames"][row]) == (n_frames, pad)
            assert n_frames + pad == 128
        assert h5.attrs["n_mels"] == 40 and h5.attrs["max_frames"] == 128 and h5.attrs["padding"] == "start"
        assert h5.attrs["n_rejected"] == 0 and h5.attrs["shard_index"] == 1
    assert not list(out.parent.glob(".*"))  # no temporary file left behind


def test_bad_wavs_stop_or_are_listed(tmp_path):
    corpus = make_corpus(tmp_path, n_images=4)
    wav_dir = corpus["speech_root"] / "val2014/wav"
    first, second, third = sorted(wav_dir.glob("*.wav"))[:3]
    first.unlink()  # missing
    soundfile.write(second, np.zeros(0, np.float32), 16000)  # zero length
    soundfile.write(third, np.zeros(8000, np.float32), 16000)  # silent: kept, counted
    paths = build_plan(tmp_path, corpus)
    out = tmp_path / "shard_00000.h5"
    with pytest.raises(InputError, match="not found") as err:
        extract_audio(paths, 0, out)
    assert first.name in str(err.value) and not out.exists()
    assert extract_audio(paths, 0, out, on_error="skip") == 0
    rejects = shards.read_rejects(out)
    assert sorted(rejects["id"]) == sorted([first.stem, second.stem])
    assert any("zero-length" in p for p in rejects["problem"])
    with h5py.File(out, "r") as h5:
        assert h5.attrs["n_rejected"] == 2 and h5.attrs["n_silent"] == 1 and len(h5["utt_id"]) == 6


def test_a_wav_of_noise_is_not_taken_for_speech(tmp_path):
    """A valid wav holding white noise: one line naming it, or listed under skip; a steady
    tone is refused the same way, and the speech-like captions are kept."""
    corpus = make_corpus(tmp_path, n_images=4)
    wav_dir = corpus["speech_root"] / "val2014/wav"
    noisy, steady = sorted(wav_dir.glob("*.wav"))[:2]
    seconds = soundfile.info(noisy).duration
    rng = np.random.default_rng(0)
    soundfile.write(noisy, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
    soundfile.write(steady, (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * 16000)) / 16000)).astype(np.float32),
                    16000)
    paths = build_plan(tmp_path, corpus)
    out = tmp_path / "shard_00000.h5"
    with pytest.raises(InputError, match="no speech") as err:
        extract_audio(paths, 0, out)
    assert noisy.name in str(err.value) or steady.name in str(err.value)
    assert not out.exists()
    assert extract_audio(paths, 0, out, on_error="skip") == 0
    rejects = shards.read_rejects(out)
    assert sorted(rejects["id"]) == sorted([noisy.stem, steady.stem])
    assert all("no speech" in p for p in rejects["problem"])
    with h5py.File(out, "r") as h5:
        assert h5.attrs["n_rejected"] == 2 and len(h5["utt_id"]) == 6


def test_float16_storage_keeps_the_values_to_half_precision(tmp_path):
    corpus = make_corpus(tmp_path, n_images=4)
    paths = build_plan(tmp_path, corpus)
    full, half = tmp_path / "f32" / "shard_00000.h5", tmp_path / "f16" / "shard_00000.h5"
    assert extract_audio(paths, 0, full) == 0
    assert extract_audio(paths, 0, half, audio={**AUDIO, "dtype": "float16"}) == 0
    with shards.ShardReader([full], key="utt_id") as a, shards.ShardReader([half], key="utt_id") as b:
        assert b.attrs["dtype"] == "float16" and a.attrs["dtype"] == "float32"
        x, y = a[3]["logmel"], b[3]["logmel"]
        assert y.dtype == np.float16 and not np.array_equal(x, y)
        assert np.abs(x - y.astype(np.float32)).max() <= np.abs(x).max() * 2.0**-10  # half precision's rounding
    with pytest.raises(InputError, match="dtype"):
        shards.check_compatible([full, half])


def test_leftovers_of_a_killed_run_are_removed(tmp_path, capsys):
    corpus = make_corpus(tmp_path, n_images=4)
    paths = build_plan(tmp_path, corpus)
    out = tmp_path / "audio" / "shard_00000.h5"
    out.parent.mkdir()
    leftover = out.parent / ".shard_00000.x1y2z3.part.h5"
    leftover.write_bytes(b"\0" * 1000)
    other = out.parent / ".shard_00001.a1b2c3.part.h5"  # another shard's: not this step's to remove
    other.write_bytes(b"\0")
    assert extract_audio(paths, 0, out) == 0
    assert not leftover.exists() and other.exists() and out.is_file()
    assert f"removed {leftover}" in capsys.readouterr().err


def test_worker_processes_give_the_same_shard(tmp_path):
    corpus = make_corpus(tmp_path, n_images=8, captions_per_image=9)  # 72 captions: two chunks of work
    paths = build_plan(tmp_path, corpus, shard_size=8)
    alone, pooled = tmp_path / "one" / "shard_00000.h5", tmp_path / "two" / "shard_00000.h5"
    assert extract_audio(paths, 0, alone, shard_size=8) == 0
    assert extract_audio(paths, 0, pooled, threads=2, shard_size=8) == 0
    with h5py.File(alone, "r") as a, h5py.File(pooled, "r") as b:
        assert len(a["utt_id"]) == 72
        for name in ("utt_id", "image_id", "logmel", "n_frames", "pad_frames"):
            assert np.array_equal(a[name][...], b[name][...]), name


def test_a_dead_audio_worker_fails_the_step_fast_naming_the_shard(tmp_path, monkeypatch, capsys):
    corpus = make_corpus(tmp_path, n_images=8, captions_per_image=9)  # 72 captions: the pool takes the 2nd chunk
    paths = build_plan(tmp_path, corpus, shard_size=8)
    victim = sorted((corpus["speech_root"] / "val2014/wav").glob("*.wav"))[70].name
    load, step = features_audio.load_audio, os.getpid()

    def dies_on_the_victim(path, sample_rate):
        if str(path).endswith(victim) and os.getpid() != step:  # in a worker process only
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
        return load(path, sample_rate)

    monkeypatch.setattr(features_audio, "load_audio", dies_on_the_victim)  # inherited by the forked workers
    out = tmp_path / "audio" / "shard_00000.h5"
    started = time.monotonic()
    assert run_main("features-audio", lambda argv: extract_audio(paths, 0, out, threads=2, shard_size=8)) == 2
    assert time.monotonic() - started < 30
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "audio worker process died" in line and f"{out} (shard 0)" in line and not out.exists()
