"""`vgsalign score-pairs` under faults: dying workers, damaged tensor files, failed writes.

Each case asserts the one error line (exit status 2, the file or chunk named, no
traceback) and that nothing was silently changed."""

import errno
import json
import shutil
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from tests.helpers.scores import synthetic_dataset, write_tensors_h5

from vgsalign.cli import run_main
from vgsalign.scores import outputs
from vgsalign.scores.run import main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_dataset(tmp_path_factory.mktemp("faults"), n_images=6, captions_per_image=2,
                             pairs_per_caption=2, n_frames=32, grid=7)


def _run(data, out, *extra, tensors=None):
    argv = ["--tensors", str(tensors or data["tensors"]), "--pairs", str(data["pairs"]),
            "--instances", str(data["instances"]), "--out", str(out), "--bootstrap", "20", "--threads", "1", *extra]
    return run_main("score-pairs", main, argv)


def _error_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if "error:" in line]


def _tensors_of(data):
    with h5py.File(data["tensors"]) as h5:
        return (h5["avt"][()], [u.decode() for u in h5["utt_id"][()]], h5["image_id"][()].tolist(),
                h5["pad_frames"][()].tolist(), float(h5.attrs["input_frames_per_frame"]))


# ---------------------------------------------------------------- workers that die

DYING_WORKER = """
import os, signal, sys
from vgsalign.cli import run_main
from vgsalign.scores import run, worker
from vgsalign.scores.plan import score_settings

score_chunk = worker.WorkerState.score_chunk

def dying(self, chunk):
    # the worker that gets the utterance of tensor row {victim} is killed as the OOM killer would
    if {victim} in chunk.rows:
        os.kill(os.getpid(), signal.SIGKILL)
    return score_chunk(self, chunk)

worker.WorkerState.score_chunk = dying
sys.exit(run_main("score-pairs", lambda argv: run.run_scores(
    tensors={tensors!r}, pairs_csv={pairs!r}, instances_json={instances!r}, out_dir={out!r},
    settings=score_settings(bootstrap=20), threads=2, chunk_utterances=2) and 0))
"""


def test_a_killed_worker_fails_the_step_within_seconds(data, tmp_path):
    script = DYING_WORKER.format(victim=5, tensors=str(data["tensors"]), pairs=str(data["pairs"]),
                                 instances=str(data["instances"]), out=str(tmp_path / "out"))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                            timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    lines = _error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "died while scoring chunk" in lines[0] and "/6" in lines[0] and "SIGKILL" in lines[0]
    utt_ids = _tensors_of(data)[1]
    assert utt_ids[5] in lines[0] or "1004" in lines[0] or "utterances" in lines[0]
    assert elapsed < 60
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.part-*"))


def test_an_input_error_in_a_worker_is_one_line(data, tmp_path, capsys):
    """A NaN tensor found by a worker process reaches the parent as the same one line."""
    avt, ids, images, pads, r = _tensors_of(data)
    avt[7, 3, 1, 1] = np.nan
    bad = write_tensors_h5(tmp_path / "nan.h5", avt, ids, images, pads, r)
    from vgsalign.scores.plan import score_settings
    from vgsalign.scores.run import run_scores

    code = run_main("score-pairs", lambda argv: run_scores(
        tensors=bad, pairs_csv=data["pairs"], instances_json=data["instances"], out_dir=tmp_path / "out",
        settings=score_settings(bootstrap=20), threads=2, chunk_utterances=2) and 0)
    assert code == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and str(bad) in lines[0] and "NaN or inf" in lines[0] and ids[7] in lines[0]


# ---------------------------------------------------------------- damaged tensor files


def test_truncated_tensor_file_is_one_line(data, tmp_path, capsys):
    damaged = tmp_path / "truncated.h5"
    shutil.copy(data["tensors"], damaged)
    with open(damaged, "r+b") as fh:
        fh.truncate(damaged.stat().st_size // 2)
    assert _run(data, tmp_path / "out", tensors=damaged) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and str(damaged) in lines[0]
    assert not (tmp_path / "out").exists()


def _corrupt_first_chunk(path, offset_in_chunk: int = 40):
    with h5py.File(path) as h5:
        info = h5["avt"].id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + offset_in_chunk)
        data = fh.read(64)
        fh.seek(info.byte_offset + offset_in_chunk)
        fh.write(bytes(b ^ 0x5A for b in data))


@pytest.mark.parametrize("options", [{"compression": "gzip"}, {"fletcher32": True},
                                     {"compression": "gzip", "fletcher32": True}],
                         ids=["gzip", "fletcher32", "gzip+fletcher32"])
def test_corrupted_chunk_is_one_line(data, tmp_path, capsys, options):
    avt, ids, images, pads, r = _tensors_of(data)
    damaged = write_tensors_h5(tmp_path / "damaged.h5", avt, ids, images, pads, r, chunk_rows=1, **options)
    intact = write_tensors_h5(tmp_path / "intact.h5", avt, ids, images, pads, r, chunk_rows=1, **options)
    _corrupt_first_chunk(damaged)
    assert _run(data, tmp_path / "ok", tensors=intact) == 0       # the same file, undamaged, scores
    assert _run(data, tmp_path / "out", tensors=damaged) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and str(damaged) in lines[0] and "cannot read the tensors (rows" in lines[0]
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the output folder


def test_failed_write_keeps_the_old_folder_whole(data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "scores"
    assert _run(data, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    written = []

    def disk_full(table, path, **kwargs):
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written.append(path)
        return original(table, path, **kwargs)

    original = outputs.write_csv
    monkeypatch.setattr(outputs, "write_csv", disk_full)
    assert _run(data, out, "--seed", "3") == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "No space left on device" in lines[0] and str(tmp_path) in lines[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before       # no new CSV beside the old summary
    assert not list(tmp_path.glob(".scores.*"))                           # the temporary folder is gone
    monkeypatch.undo()
    assert _run(data, out, "--seed", "3") == 0
    assert json.loads((out / "summary.json").read_text())["options"]["seed"] == 3
    assert sorted(p.name for p in out.iterdir()) == sorted(before)


def test_leftover_of_a_dead_run_is_removed(data, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = tmp_path / f".scores.part-{int(dead.stdout)}-abc"
    leftover.mkdir()
    (leftover / "pair_scores.csv").write_text("half")
    ours = tmp_path / ".scores.part-1-live"          # pid 1 is alive: not ours to remove
    ours.mkdir()
    assert _run(data, tmp_path / "scores") == 0
    assert not leftover.exists() and ours.exists()
    assert (tmp_path / "scores" / "summary.json").exists()


def test_permission_error_names_the_folder(data, tmp_path, capsys, monkeypatch):
    def refuse(prefix, dir):
        raise PermissionError(errno.EACCES, "Permission denied", dir)

    monkeypatch.setattr(outputs.tempfile, "mkdtemp", refuse)
    assert _run(data, tmp_path / "locked" / "scores") == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "Permission denied" in lines[0] and str(tmp_path / "locked") in lines[0]


def test_recorded_checksums_must_be_there(data, tmp_path, capsys):
    avt, ids, images, pads, r = _tensors_of(data)
    with_sums = write_tensors_h5(tmp_path / "sums.h5", avt, ids, images, pads, r, chunk_rows=1, fletcher32=True)
    without = write_tensors_h5(tmp_path / "plain.h5", avt, ids, images, pads, r, chunk_rows=1)
    for path in (with_sums, without):
        with h5py.File(path, "a") as h5:
            h5.attrs["integrity"] = "fletcher32"
    assert _run(data, tmp_path / "ok", tensors=with_sums) == 0
    assert _run(data, tmp_path / "out", tensors=without) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and str(without) in lines[0] and "no checksums" in lines[0]


def test_spawned_workers_give_the_same_bytes(data, tmp_path, monkeypatch):
    """Where fork is missing (macOS, Windows) the job is pickled once per spawned worker."""
    import multiprocessing

    from vgsalign.scores.plan import score_settings
    from vgsalign.scores.run import run_scores

    def run(out):
        run_scores(tensors=data["tensors"], pairs_csv=data["pairs"], instances_json=data["instances"], out_dir=out,
                   settings=score_settings(bootstrap=20), threads=2, chunk_utterances=3)

    run(tmp_path / "fork")
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    run(tmp_path / "spawn")
    for path in sorted((tmp_path / "fork").glob("*.csv")):
        assert path.read_bytes() == (tmp_path / "spawn" / path.name).read_bytes(), path.name
