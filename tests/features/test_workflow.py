"""The `features` target through Snakemake on a tiny corpus: shards, resume, what a change reruns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import yaml

from vgsalign.config import load_config

from tests.helpers.features import make_corpus, override_config

pytestmark = pytest.mark.slow


def snakemake(repo_root: Path, workdir: Path, configs: list[Path], *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = [sys.executable, "-m", "snakemake", "-s", str(repo_root / "Snakefile"), "-d", str(workdir),
               "--configfile", str(repo_root / "config.yaml"), *map(str, configs), "--cores", "2", *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def jobs_of(dry_run_output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    counts, in_table = {}, False
    for line in dry_run_output.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
        elif in_table and parts and parts[0] == "total":
            break
        elif in_table and len(parts) == 2 and parts[1].isdigit() and parts[0].isidentifier():
            counts[parts[0]] = int(parts[1])
    return counts


def test_features_target_resume_and_reruns(tmp_path, repo_root):
    corpus = make_corpus(tmp_path / "corpus", n_images=6)
    work = tmp_path / "work"
    work.mkdir()
    config = override_config(tmp_path / "tiny.yaml", corpus, shard_size=4)
    snakemake(repo_root, work, [config], "features")

    features = work / "results/tiny/features"
    shard_files = sorted(features.glob("*/val2014/shard_*.h5"))
    assert [p.relative_to(features).as_posix() for p in shard_files] == [
        "audio/val2014/shard_00000.h5", "audio/val2014/shard_00001.h5",
        "visual/val2014/shard_00000.h5", "visual/val2014/shard_00001.h5"]
    with h5py.File(features / "audio/val2014/shard_00001.h5", "r") as audio, \
            h5py.File(features / "visual/val2014/shard_00001.h5", "r") as visual:
        assert set(audio["image_id"][...]) == set(visual["image_id"][...]) == set(corpus["image_ids"][4:])
        assert audio["logmel"].shape == (4, 512, 40) and visual["features"].shape == (2, 14, 14, 112)

    # resume: deleting one shard recomputes only that shard
    untouched = {p: p.stat().st_mtime_ns for p in shard_files}
    (features / "visual/val2014/shard_00001.h5").unlink()
    snakemake(repo_root, work, [config], "features")
    for path, mtime in untouched.items():
        if path.name != "shard_00001.h5" or "audio" in path.parts:
            assert path.stat().st_mtime_ns == mtime, f"{path} was recomputed"
    assert (features / "visual/val2014/shard_00001.h5").is_file()

    # a changed audio setting reruns the audio shards, not the index nor the visual shards;
    # batch size and decoding workers change no number and rerun nothing
    changed = tmp_path / "changed.yaml"
    defaults = load_config(repo_root / "config.yaml")
    changed.write_text(yaml.safe_dump({"audio": {**defaults["audio"], "n_mels": 24},
                                       "visual": {**defaults["visual"], "batch_size": 7, "num_workers": 0}}))
    dry = snakemake(repo_root, work, [config, changed], "features", "-n")
    assert jobs_of(dry.stdout) == {"features_audio": 2, "features": 1}, dry.stdout[-2000:]


def test_a_deleted_shard_is_rebuilt_by_a_plain_scores_run(tmp_path, repo_root):
    """Every stage target lists the shards, so a missing shard is a missing input of `scores`:
    it is rebuilt, and what read it reruns (outputs recorded with --touch, nothing run)."""
    from tests.helpers.workflow import tiny_demo_config

    work = tmp_path / "work"
    work.mkdir()
    config = tiny_demo_config(tmp_path / "tiny.yaml")

    def run(*args):
        command = [sys.executable, "-m", "snakemake", "-s", str(repo_root / "Snakefile"), "-d", str(work),
                   "--configfile", str(config), "--cores", "2", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    summary = run("--summary", "scores").stdout
    for line in summary.splitlines()[1:]:
        if "\t" in line:
            (work / line.split("\t")[0]).parent.mkdir(parents=True, exist_ok=True)
            (work / line.split("\t")[0]).touch()
    run("--touch", "--forceall", "scores")
    assert jobs_of(run("-n", "scores").stdout) == {}
    (work / "results/tiny/features/visual/val2014/shard_00001.h5").unlink()
    planned = jobs_of(run("-n", "scores").stdout)
    assert planned == {"features_visual": 1, "train_model": 1, "tensors_dump": 1, "score_pairs": 1, "scores": 1}, planned
