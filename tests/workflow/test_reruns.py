"""A changed setting, or an edited stage module, reruns exactly the stage it enters and
everything downstream, and nothing upstream.

Running the real pipeline is not needed to know what Snakemake would rerun: the fixture
creates every output of the workflow as an empty file and records it with
`snakemake --touch --forceall`, which stores each job's params (settings and `code` hash),
input and rule code as a real run does. Dry runs with a changed config (or an edited copy
of a module) then list the jobs Snakemake plans, with its reasons.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.workflow import ROOT, SPLIT, jobs_planned, output_of, run_env, tiny_demo_config

pytestmark = pytest.mark.slow

# every stage target up to the report (testdata adds the histogram and summary of the test set)
TARGETS = ("testdata", "scores", "report")


def rule_bodies(workflow: Path) -> dict[str, tuple[str, str]]:
    """rule name -> (rules file stem, body)"""
    rules = {}
    for path in sorted((workflow / "workflow/rules").glob("*.smk")):
        parts = re.split(r"^rule (\w+):\n", path.read_text(), flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2]):
            rules[name] = (path.stem, body)
    return rules


def working_rules(planned: dict[str, int], workflow: Path, with_report: bool = False) -> dict[str, int]:
    """Planned jobs that do work: without target rules that only collect files (no shell),
    and without the report's rules unless asked for (the report reads everything, so it
    follows every change; test_the_report_follows_every_stage checks that)."""
    bodies = rule_bodies(workflow)
    return {rule: n for rule, n in planned.items()
            if rule in bodies and (with_report or bodies[rule][0] != "report")
            and re.search(r"^\s+(shell|run|script):", bodies[rule][1], re.M)}


class Workflow:
    """A copy of the workflow (so that module edits stay here) with every output recorded."""

    def __init__(self, root: Path):
        self.tree = root / "workflow_copy"
        self.work = root / "work"
        for part in ("Snakefile", "config.yaml", "workflow", "envs", "src/vgsalign"):
            source, target = ROOT / part, self.tree / part
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        self.config = tiny_demo_config(root / "tiny.yaml")

    def snakemake(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess:
        command = ["timeout", "-s", "INT", "240", sys.executable, "-m", "snakemake", "-s", str(self.tree / "Snakefile"),
                   "-d", str(self.work), "--configfile", str(config or self.config), "--cores", "2", *args]
        proc = subprocess.run(command, cwd=self.tree, capture_output=True, text=True, env=run_env(), timeout=300)
        assert proc.returncode == 0, output_of(proc)
        return proc

    def record_all_outputs(self) -> list[str]:
        summary = self.snakemake("--summary", *TARGETS).stdout
        outputs = [line.split("\t")[0] for line in summary.splitlines()[1:] if "\t" in line]
        for output in outputs:
            path = self.work / output
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        self.snakemake("--touch", "--forceall", *TARGETS)
        return outputs

    def planned_with(self, section: str, key: str, value, with_report: bool = False, **also) -> dict[str, int]:
        """Working jobs of a dry run with config[section][key] = value (and other keys of
        the same section from `also`)."""
        config = yaml.safe_load(self.config.read_text())
        assert config[section][key] != value, "not a change"
        config[section].update({key: value, **also})
        changed = self.config.with_name(f"changed_{section}_{key}.yaml")
        changed.write_text(yaml.safe_dump(config))
        return working_rules(jobs_planned(self.snakemake("-n", *TARGETS, config=changed)), self.tree, with_report)


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    wf = Workflow(tmp_path_factory.mktemp("reruns"))
    outputs = wf.record_all_outputs()
    assert len(outputs) > 20
    return wf


def test_recorded_outputs_are_up_to_date(workflow):
    assert jobs_planned(workflow.snakemake("-n", *TARGETS)) == {}


# (section, key, new value) -> the working jobs it must rerun: its stage and what follows.
# The tiny config has one split with 2 shards per modality.
CHANGES = {
    # pairs (with the histogram and summary that report them); the tensors are dumped for
    # the test pairs' utterances, so they follow; then the scores
    ("match", "threshold", 0.6): {"testdata_pairs": 1, "testdata_histogram": 1, "testdata_summary": 1,
                                  "tensors_dump": 1, "score_pairs": 1},
    ("audio", "n_mels", 64): {"features_audio": 2, "train_model": 1, "tensors_dump": 1, "score_pairs": 1},
    ("visual", "backbone", "vgg16"): {"features_visual": 2, "train_model": 1, "tensors_dump": 1, "score_pairs": 1},
    ("train", "loss", "infonce"): {"train_model": 1, "tensors_dump": 1, "score_pairs": 1},
    ("scores", "softmax", "none"): {"score_pairs": 1},
}


@pytest.mark.parametrize("change", list(CHANGES), ids=lambda c: f"{c[0]}.{c[1]}")
def test_a_changed_setting_reruns_its_stage_and_what_follows(workflow, change):
    # VGG16 without a weights file must be asked for explicitly (same section, same stage)
    also = {"allow_random_weights": True} if change[2] == "vgg16" else {}
    assert workflow.planned_with(*change, **also) == CHANGES[change]


# the report: its own settings rerun only the report; any stage that reruns reruns it too
REPORT_CHANGES = {
    ("report", "n_examples", 3): {"report_html": 1},
    ("report", "seed", 5): {"report_html": 1},
    ("scores", "softmax", "none"): {"score_pairs": 1, "report_html": 1},
    ("train", "loss", "infonce"): {"train_model": 1, "tensors_dump": 1, "score_pairs": 1, "report_html": 1},
}


@pytest.mark.parametrize("change", list(REPORT_CHANGES), ids=lambda c: f"{c[0]}.{c[1]}")
def test_the_report_follows_every_stage(workflow, change):
    assert workflow.planned_with(*change, with_report=True) == REPORT_CHANGES[change]


def test_an_edited_report_module_reruns_only_the_report(workflow):
    path = workflow.tree / "src/vgsalign/report/figures.py"
    original = path.read_text()
    try:
        path.write_text(original + "\n# an edit\n")
        proc = workflow.snakemake("-n", *TARGETS)
        assert working_rules(jobs_planned(proc), workflow.tree, with_report=True) == {"report_html": 1}
    finally:
        path.write_text(original)


def test_settings_that_change_no_number_rerun_nothing(workflow):
    # decoding workers and batch size of the image CNN only change speed
    assert workflow.planned_with("visual", "num_workers", 3, with_report=True) == {}


@pytest.mark.parametrize("module, expected", [
    ("scores/alignment", {"score_pairs": 1}),
    # a rule hashes its whole subpackage: an edit anywhere in it reruns the subpackage's rules
    ("features/visual", {"features_images": 1, "features_captions": 1, "features_audio": 2, "features_visual": 2,
                         "train_model": 1, "tensors_dump": 1, "score_pairs": 1}),
    ("testdata/pairs", {"testdata_dataset": 1, "testdata_frames": 1, "testdata_nouns": 1, "testdata_vocab": 1,
                        "testdata_labels": 1, "testdata_similarities": 1, "testdata_histogram": 1,
                        "testdata_pairs": 1, "testdata_summary": 1, "tensors_dump": 1, "score_pairs": 1}),
])
def test_an_edited_stage_module_reruns_its_stage_and_what_follows(workflow, module, expected):
    path = workflow.tree / "src/vgsalign" / f"{module}.py"
    original = path.read_text()
    try:
        path.write_text(original + "\n# an edit\n")
        proc = workflow.snakemake("-n", *TARGETS)
        assert working_rules(jobs_planned(proc), workflow.tree) == expected
        assert "Params have changed since last execution" in proc.stdout + proc.stderr
    finally:
        path.write_text(original)
    assert jobs_planned(workflow.snakemake("-n", *TARGETS)) == {}


def test_shared_helpers_are_not_hashed(workflow):
    """Editing cli/errors/atomic/settings reruns nothing (docs/cluster.md: force with -R)."""
    path = workflow.tree / "src/vgsalign/atomic.py"
    original = path.read_text()
    try:
        path.write_text(original + "\n# an edit\n")
        assert jobs_planned(workflow.snakemake("-n", *TARGETS)) == {}
    finally:
        path.write_text(original)


def test_an_edited_corpus_file_reruns_what_read_it(workflow):
    """The split's corpus state (names, sizes, mtimes) is an input of the steps that read
    the corpus, refreshed at every start: an unchanged corpus reruns nothing, a caption
    file added, edited or deleted reruns every step that reads the corpus."""
    state = f"results/tiny/corpus/state_{SPLIT}.json"
    caption = workflow.work / "results/tiny/corpus/speech" / SPLIT / "json/1_1_Joe_None_1-0.json"
    caption.parent.mkdir(parents=True, exist_ok=True)
    caption.write_text('{"timecode": []}')
    try:
        # record the state for real (the fixture's --touch left an empty file), then bring
        # everything after it up to date
        workflow.snakemake("--forcerun", "corpus_state", "--until", "corpus_state", state)
        workflow.snakemake("--touch", *TARGETS)
        assert jobs_planned(workflow.snakemake("-n", *TARGETS)) == {}

        caption.write_text('{"timecode": [[0, "WORD", "a"]]}')
        planned = working_rules(jobs_planned(workflow.snakemake("-n", *TARGETS)), workflow.tree)
        assert {"testdata_dataset", "features_images", "train_model", "score_pairs"} <= set(planned)
        assert "corpus_state" not in planned          # refreshed at the start, not a job

        caption.unlink()                              # a deleted file is a change too
        planned = working_rules(jobs_planned(workflow.snakemake("-n", *TARGETS)), workflow.tree)
        assert "testdata_dataset" in planned
    finally:
        caption.unlink(missing_ok=True)
        workflow.snakemake("-n", *TARGETS)            # the state follows the corpus back
        workflow.snakemake("--touch", *TARGETS)
    assert jobs_planned(workflow.snakemake("-n", *TARGETS)) == {}
