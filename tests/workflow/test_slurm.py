"""The workflow's test-set and feature stages submitted to a real SLURM through the profile.

tests/workflow/cluster.sh starts a single-node cluster on loopback (installing Debian's packages
when missing; with slurmdbd on a local MariaDB so that `sacct` works). The same tiny demo
corpus is then processed twice, here and through `--executor slurm` with
workflow/profiles/slurm (partition, CPU and memory figures fitted to the one small node),
and the outputs must agree. Runs only with VGSALIGN_TEST_SLURM=1 (as .ci/run sets it), since
it installs packages and starts daemons; skipped, with the reason, where the machine cannot
run SLURM at all (not root, no packages).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from tests.helpers.workflow import ROOT, SPLIT, opted_out, output_of, slurm_submissions, snakemake, tiny_demo_config

pytestmark = pytest.mark.slow

CLUSTER = ROOT / "tests/workflow/cluster.sh"
PROFILE = ROOT / "workflow/profiles/slurm/config.yaml"
TARGETS = ("testdata", "features")


@dataclass
class Cluster:
    accounting: bool       # slurmdbd runs: sacct lists jobs, the plugin's default status command works
    no_accounting_reason: str
    cpus: int
    started_here: bool


def cluster_script(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLUSTER), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster():
    if reason := opted_out("VGSALIGN_TEST_SLURM"):
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("a single-node SLURM needs root here (munged, slurmctld, slurmd run as root)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and there is no apt-get to install it")
    running_before = "slurmctld: running" in cluster_script("status").stdout
    reason = ""
    proc = cluster_script("start", "--accounting")
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        cluster_script("stop")
        proc = cluster_script("start")
    if proc.returncode != 0:
        pytest.skip(f"cannot start a single-node SLURM here: {proc.stderr.strip()[-800:]}")
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    accounting = "accounting_storage/slurmdbd" in config
    if not accounting and not reason:
        reason = "the running cluster has no slurmdbd"
    yield Cluster(accounting=accounting, no_accounting_reason=reason, cpus=os.cpu_count() or 1,
                  started_here=not running_before)
    if not running_before:
        cluster_script("stop")


def profile_for_this_node(directory: Path, cpus: int, accounting: bool) -> Path:
    """workflow/profiles/slurm as a user would adapt it: the partition set, and CPU and
    memory requests cut to what one small node offers. Everything else is kept as is,
    GPU requests included (the test node has one pretend GPU)."""
    profile = yaml.safe_load(PROFILE.read_text())
    profile["default-resources"]["slurm_partition"] = "debug"
    profile["default-resources"]["mem_mb"] = 1000
    profile["set-threads"] = {rule: min(n, cpus) for rule, n in profile["set-threads"].items()}
    # the rules size their jobs for real corpora (JOB_SIZES); one small node offers less
    for rule in re.findall(r"^rule (\w+):", "".join(p.read_text() for p in (ROOT / "workflow/rules").glob("*.smk")), re.M):
        profile["set-resources"].setdefault(rule, {}).update(mem_mb=1500, runtime=30)
    profile["slurm-init-seconds-before-status-checks"] = 2  # seconds-long jobs here
    if not accounting:
        profile["slurm-status-command"] = "squeue"  # sacct has nothing to say without slurmdbd
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(profile))
    return directory


def run_both(cluster: Cluster, tmp: Path) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """The same tiny demo corpus through the test-set and feature stages, here and on SLURM."""
    config = tiny_demo_config(tmp / "tiny.yaml")
    local, remote = tmp / "local", tmp / "slurm"

    started = time.monotonic()
    proc = snakemake(local, config, "--workflow-profile", str(ROOT / "workflow/profiles/default"),
                     "--cores", "2", *TARGETS, timeout=400)
    assert proc.returncode == 0, output_of(proc)
    local_s = time.monotonic() - started

    # the cluster run starts from the same corpus and resources (they are not stages under test)
    for part in ("results/tiny/corpus", "resources"):
        shutil.copytree(local / part, remote / part, symlinks=True)

    started = time.monotonic()
    profile = profile_for_this_node(tmp / "profile", cluster.cpus, cluster.accounting)
    proc = snakemake(remote, config, "--workflow-profile", str(profile), *TARGETS, timeout=300)
    remote_s = time.monotonic() - started
    print(f"\nlocal run (corpus + test set + features): {local_s:.0f} s; "
          f"SLURM run (test set + features): {remote_s:.0f} s")
    assert proc.returncode == 0, output_of(proc, 8000)
    return local / "results/tiny", remote / "results/tiny", proc


# One test, not several: with `pytest -n 2` tests of a module may land on two workers, and
# two of them must not each start the one cluster.
def test_testdata_and_features_on_slurm_match_a_local_run(cluster, tmp_path):
    local, remote, proc = run_both(cluster, tmp_path)
    check_stages_ran_as_slurm_jobs(proc, remote)
    check_outputs_match(local, remote)
    if not cluster.accounting:
        pytest.skip("the stages ran on SLURM and matched the local run, but without SLURM accounting "
                    f"sacct lists no jobs, so that was not checked: {cluster.no_accounting_reason}")
    check_jobs_in_sacct(proc)


def check_stages_ran_as_slurm_jobs(proc: subprocess.CompletedProcess, remote: Path) -> None:
    submitted = slurm_submissions(proc)
    kinds = sorted(submitted.values())
    # one job per shard for the features, one job for each group of small steps
    assert kinds.count("rule_features_audio") == 2 and kinds.count("rule_features_visual") == 2, kinds
    assert sum(k.startswith("group_testdata_") for k in kinds) == 1, kinds
    assert sum(k.startswith("group_feature_index_") for k in kinds) == 1, kinds
    assert len(kinds) == 6, kinds
    # nothing but the target rules (which only collect files) ran on the submitting machine
    assert set(re.findall(r"^localrule (\w+):", proc.stdout + proc.stderr, re.M)) <= set(TARGETS)
    assert (remote / "testdata/pairs.csv").exists()


def check_jobs_in_sacct(proc: subprocess.CompletedProcess) -> None:
    submitted = slurm_submissions(proc)
    rows = {}
    for _ in range(20):  # slurmctld hands finished jobs to slurmdbd within seconds
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(submitted), "-o", "JobID,State,AllocTRES"],
                             capture_output=True, text=True, check=True).stdout
        rows = {line.split("|")[0]: line.split("|")[1:] for line in out.splitlines() if line}
        if set(rows) == set(submitted) and all(state == "COMPLETED" for state, _ in rows.values()):
            break
        time.sleep(1)
    assert set(rows) == set(submitted), (rows, submitted)
    assert all(state == "COMPLETED" for state, _ in rows.values()), rows
    for job_id, kind in submitted.items():
        tres = rows[job_id][1]
        # the profile's GPU request reached SLURM (--gpus=1) for visual features only
        assert ("gres/gpu=1" in tres) == (kind == "rule_features_visual"), (kind, tres)
        assert "mem=" in tres and "cpu=" in tres


def check_outputs_match(local: Path, remote: Path) -> None:
    for name in ("utterances", "words", "frames", "nouns", "vocab", "labels", "similarities", "pairs"):
        assert (local / f"testdata/{name}.csv").read_bytes() == (remote / f"testdata/{name}.csv").read_bytes(), name
    shards = sorted(p.relative_to(local) for p in (local / "features").rglob("shard_*.h5"))
    assert [str(p) for p in shards] == [f"features/{m}/{SPLIT}/shard_0000{k}.h5" for m in ("audio", "visual") for k in (0, 1)]
    assert shards == sorted(p.relative_to(remote) for p in (remote / "features").rglob("shard_*.h5"))
    for shard in shards:
        with h5py.File(local / shard) as here, h5py.File(remote / shard) as there:
            names: list[str] = []
            here.visit(names.append)
            other: list[str] = []
            there.visit(other.append)
            assert names == other, shard
            for name in names:
                if not isinstance(here[name], h5py.Dataset):
                    continue
                a, b = here[name][()], there[name][()]
                assert a.shape == b.shape and a.dtype == b.dtype, (shard, name)
                if a.dtype.kind == "f":
                    # same code, same thread count; allow for a different BLAS code path
                    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=f"{shard}:{name}")
                else:
                    assert np.array_equal(a, b), (shard, name)
            assert set(here.attrs) == set(there.attrs), shard
            for key in here.attrs:
                assert np.array_equal(here.attrs[key], there.attrs[key]), (shard, key)
