"""Running the workflow from tests: a tiny demo config, snakemake under `timeout -s INT`,
and reading what a (dry) run planned or submitted."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from vgsalign.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SPLIT = "val2014"


def tiny_demo_config(path: Path, n_images: int = 8, shard_size: int = 4, **sections) -> Path:
    """config.yaml for a demo corpus of `n_images` images x 2 captions, one split for everything."""
    config = load_config(ROOT / "config.yaml")
    config["dataset"]["name"] = "tiny"
    config["dataset"]["splits"] = {"train": SPLIT, "val": SPLIT, "test": SPLIT}
    config["demo"].update(n_images={SPLIT: n_images}, captions_per_image=2)
    config["features"]["shard_size"] = shard_size
    # two threads for visual shards whether run here or on the cluster (same float sums)
    config["visual"].update(batch_size=4, num_workers=1)
    for section, values in sections.items():
        config[section] = {**config[section], **copy.deepcopy(values)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


# Tests that install system packages or start daemons run only when asked (.ci/run asks)
OPT_IN = {
    "VGSALIGN_TEST_SLURM": "it installs munge, slurmctld, slurmd and MariaDB with apt as root and starts a single-node SLURM",
    "VGSALIGN_TEST_CHROMIUM": "it renders the report in Debian's headless chromium",
}


def opted_out(variable: str) -> str | None:
    """The skip reason when the opt-in `variable` is not set to 1, else None."""
    if os.environ.get(variable) == "1":
        return None
    return f"set {variable}=1 to run this test: {OPT_IN[variable]}; .ci/run sets it"


def run_env() -> dict[str, str]:
    """The environment for snakemake and its jobs: this interpreter's bin first on PATH
    (jobs call the `vgsalign` console script)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def snakemake(workdir: Path, configfile: Path, *args: str, timeout: int = 300,
              snakefile: Path = ROOT / "Snakefile") -> subprocess.CompletedProcess:
    """`snakemake` on the workflow in `workdir`, interrupted with SIGINT after `timeout` s
    (a run stuck polling a cluster ignores SIGTERM)."""
    command = ["timeout", "-s", "INT", "-k", "30", str(timeout), sys.executable, "-m", "snakemake",
               "-s", str(snakefile), "-d", str(workdir), "--configfile", str(configfile), *args]
    return subprocess.run(command, cwd=snakefile.parent, capture_output=True, text=True, env=run_env(),
                          timeout=timeout + 60)


def output_of(proc: subprocess.CompletedProcess, tail: int = 4000) -> str:
    return (proc.stdout + proc.stderr)[-tail:]


def jobs_planned(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from the `Job stats` table of a (dry) run; {} when nothing to do."""
    text = proc.stdout + proc.stderr
    if "Job stats:" not in text:
        return {}
    counts: dict[str, int] = {}
    for line in text.split("Job stats:", 1)[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        if parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")


def slurm_submissions(proc: subprocess.CompletedProcess) -> dict[str, str]:
    """SLURM job id -> the folder of its SLURM log, which names what it ran:
    'rule_<rule>' or 'group_<group>_<rules...>'."""
    found = {}
    for job_id, log in SUBMITTED.findall(proc.stdout + proc.stderr):
        found[job_id] = next(p for p in Path(log).parts if p.startswith(("rule_", "group_")))
    return found
