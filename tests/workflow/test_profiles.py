"""The workflow profiles: valid Snakemake options, rules that exist, GPU requests where the
GPU stages are, and the local profile's GPU limit really serialising GPU jobs."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import lru_cache

import pytest
import yaml

from tests.helpers.workflow import ROOT, run_env

PROFILES = ROOT / "workflow/profiles"
# visual features, training, tensor dump (and training and dump of the other seeds, train.seeds)
GPU_RULES = {"features_visual", "train_model", "tensors_dump", "train_model_seed", "tensors_dump_seed"}


def load(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


@lru_cache(maxsize=1)
def snakemake_options() -> set[str]:
    text = subprocess.run([sys.executable, "-m", "snakemake", "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]+)", text))


@lru_cache(maxsize=1)
def workflow_rules() -> dict[str, str]:
    """rule name -> its body text, from workflow/rules/*.smk; a rule made with `use rule A
    as B with:` gets A's body followed by its own overrides (it inherits the rest)."""
    rules, derived = {}, []
    for path in sorted((ROOT / "workflow/rules").glob("*.smk")):
        parts = re.split(r"^(?:rule (\w+)|use rule (\w+) as (\w+) with):\n", path.read_text(), flags=re.M)
        for name, base, used_as, body in zip(parts[1::4], parts[2::4], parts[3::4], parts[4::4]):
            if name:
                rules[name] = body
            else:
                derived.append((used_as, base, body))
    for name, base, body in derived:
        rules[name] = rules[base] + body
    return rules


@pytest.mark.parametrize("name", ["default", "slurm"])
def test_every_key_is_a_snakemake_option(name):
    unknown = set(load(name)) - snakemake_options()
    assert not unknown, f"workflow/profiles/{name}: not snakemake options: {sorted(unknown)}"


def test_per_rule_settings_name_existing_rules():
    # Snakemake silently ignores --set-resources/--set-threads/--groups for unknown rules
    slurm = load("slurm")
    named = set(slurm["set-threads"]) | set(slurm["set-resources"]) | set(slurm["groups"])
    missing = named - set(workflow_rules())
    assert not missing, f"workflow/profiles/slurm names rules that do not exist: {sorted(missing)}"


def test_gpu_stages_ask_slurm_for_a_gpu_and_nothing_else_does():
    slurm = load("slurm")
    asking = {rule for rule, res in slurm["set-resources"].items() if res.get("gpu")}
    assert asking == GPU_RULES
    # and the rules themselves declare the GPU the local limit counts
    for rule in GPU_RULES:
        assert re.search(r"^\s+gpu=1,?$", workflow_rules()[rule], re.M), f"rule {rule} lacks resources: gpu=1"


def test_slurm_profile_placeholders_and_runtime_figures():
    slurm = load("slurm")
    assert slurm["executor"] == "slurm"
    defaults = slurm["default-resources"]
    assert defaults["slurm_partition"] == "SET-YOUR-PARTITION"
    assert "slurm_account" not in defaults  # commented out: needed only on some sites
    assert "# slurm_account:" in (PROFILES / "slurm/config.yaml").read_text()
    for rule, resources in slurm["set-resources"].items():
        assert set(resources) <= {"gpu", "gpu_model", "mem_mb", "runtime", "cpus_per_task", "slurm_partition"}, rule
        assert all(isinstance(resources[key], int) and resources[key] > 0 for key in ("mem_mb", "runtime")
                   if key in resources), rule
    # CPU counts are threads: the plugin turns them into --cpus-per-task
    assert all(isinstance(n, int) and n >= 1 for n in slurm["set-threads"].values())


def test_default_profile_settings():
    default = load("default")
    assert default["resources"] == {"gpu": 1}
    assert set(default["rerun-triggers"]) == {"mtime", "params", "input", "software-env", "code"}
    assert default["keep-going"] is False
    assert "executor" not in default


def test_default_profile_is_picked_up_by_a_plain_run(tmp_path):
    # run from the checkout, as a user does, but with the working directory (.snakemake/,
    # results/) in tmp_path so that the test leaves nothing in the checkout
    proc = subprocess.run([sys.executable, "-m", "snakemake", "scores", "-n", "--cores", "8", "-d", str(tmp_path),
                           "--configfile", str(ROOT / "config.yaml")], cwd=ROOT,
                          capture_output=True, text=True, env=run_env(), timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    # Snakemake looks for profiles/default/ beside the Snakefile (or in the working directory)
    assert re.search(r"Using workflow specific profile \S*profiles/default", text), (
        "workflow/profiles/default is not found by a plain `snakemake` run: " + text[:300])


def test_gpu_limit_serialises_gpu_jobs(tmp_path):
    """Two GPU jobs and two CPU jobs on 4 cores with the default profile: the GPU jobs never overlap."""
    (tmp_path / "Snakefile").write_text(
        "rule all:\n"
        "    input: expand('done/{kind}{i}.txt', kind=['gpu', 'cpu'], i=[1, 2])\n"
        "rule gpu:\n"
        "    output: 'done/gpu{i}.txt'\n"
        "    resources: gpu=1\n"
        "    shell: 'date +%s.%N > {output}; sleep 1.5; date +%s.%N >> {output}'\n"
        "rule cpu:\n"
        "    output: 'done/cpu{i}.txt'\n"
        "    shell: 'date +%s.%N > {output}; sleep 1.5; date +%s.%N >> {output}'\n"
    )
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--workflow-profile", str(PROFILES / "default"),
                           "--cores", "4"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]

    def span(name: str) -> tuple[float, float]:
        start, end = map(float, (tmp_path / "done" / name).read_text().split())
        return start, end

    gpu1, gpu2 = span("gpu1.txt"), span("gpu2.txt")
    assert gpu1[1] <= gpu2[0] or gpu2[1] <= gpu1[0], (gpu1, gpu2)
    # while CPU jobs did run alongside (the limit is on the GPU only)
    cpu1, cpu2 = span("cpu1.txt"), span("cpu2.txt")
    assert cpu1[0] < cpu2[1] and cpu2[0] < cpu1[1], (cpu1, cpu2)
