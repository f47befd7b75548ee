"""envs/: the conda environment the rules name (`--sdm conda`) is valid and agrees with
pyproject.toml. Environments cannot be built on machines without conda and network, so
this checks what can be checked without building one."""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.helpers.workflow import ROOT

ENV = ROOT / "envs/vgsalign.yaml"


def environment() -> dict:
    return yaml.safe_load(ENV.read_text())


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pip_requirements() -> dict[str, Requirement]:
    pip = next(d["pip"] for d in environment()["dependencies"] if isinstance(d, dict) and "pip" in d)
    requirements = {}
    for line in pip:
        assert not line.startswith("-"), f"pip option {line!r} in {ENV.name}: paths there resolve against Snakemake's copy"
        requirement = Requirement(line)
        requirements[requirement.name.lower()] = requirement
    return requirements


def test_environment_file_is_a_conda_environment():
    env = environment()
    assert set(env) <= {"name", "channels", "dependencies"}
    assert env["channels"] and all(isinstance(c, str) for c in env["channels"])
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "pip" in conda
    python = next(d for d in conda if d.startswith("python"))
    version = re.fullmatch(r"python\s*=+\s*([\d.]+)", python).group(1)
    assert SpecifierSet(pyproject()["project"]["requires-python"]).contains(version + ".0")


def test_environment_has_exactly_the_package_dependencies():
    wanted = {Requirement(d).name.lower(): Requirement(d) for d in pyproject()["project"]["dependencies"]}
    have = pip_requirements()
    assert set(have) == set(wanted), {"missing": sorted(set(wanted) - set(have)), "extra": sorted(set(have) - set(wanted))}
    for name, requirement in have.items():
        want = wanted[name]
        if str(requirement.specifier) == str(want.specifier):
            continue
        # the environment may pin a version the package allows (torch: one known build)
        pins = [s.version for s in requirement.specifier if s.operator == "=="]
        assert len(pins) == 1 and want.specifier.contains(pins[0], prereleases=True), (str(requirement), str(want))


def test_package_is_installed_by_the_post_deploy_script():
    script = ENV.with_name("vgsalign.post-deploy.sh")
    assert script.exists(), "Snakemake runs envs/vgsalign.post-deploy.sh after creating the environment"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert "pip install --no-deps --editable ." in text
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.parametrize("path", sorted((ROOT / "workflow/rules").glob("*.smk")), ids=lambda p: p.name)
def test_rules_name_existing_environments(path):
    # every rule runs in vgsalign's environment, but the forced aligner in its own
    allowed = {ENV, ROOT / "envs/mfa.yaml"} if path.name == "alignments.smk" else {ENV}
    for line in re.findall(r"^\s+conda:\n\s+\"([^\"]+)\"", path.read_text(), flags=re.M):
        assert (path.parent / line).resolve() in allowed, f"{path.name}: conda env {line} (rules use {ENV.name})"
