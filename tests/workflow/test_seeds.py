"""train.seeds in the workflow (dry runs on the tiny demo config): one more training, tensor
dump and scoring per extra seed, each with only train.seed changed, and the seeds' summary
feeding the scores target and the report; without train.seeds the plan is one model."""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers.workflow import jobs_planned, output_of, snakemake, tiny_demo_config

SEED_RULES = ("train_model_seed", "tensors_dump_seed", "score_pairs_seed", "seeds_summary")


def dry_run(tmp_path, **sections):
    config = tiny_demo_config(tmp_path / "tiny.yaml", **sections)
    proc = snakemake(tmp_path / "work", config, "-n", "-p", "--cores", "2", "report")
    assert proc.returncode == 0, output_of(proc)
    return proc.stdout + proc.stderr, jobs_planned(proc)


def train_commands(text: str) -> dict[str, dict]:
    """out-dir -> the --train slice of every planned `vgsalign train-model` command."""
    commands = {}
    for line in text.splitlines():
        if "vgsalign train-model" in line:
            train = json.loads(re.search(r"--train '(\{.*?\})'", line).group(1))
            commands[re.search(r"--out-dir (\S+)", line).group(1)] = train
    return commands


def job_block(text: str, rule: str) -> str:
    """The dry run's lines of one rule's job (its input, output, reason)."""
    match = re.search(rf"^(?:local)?rule {rule}:\n((?:    .*\n)+)", text, re.M)
    assert match, f"no job of rule {rule} planned"
    return match.group(1)


@pytest.fixture(scope="module")
def with_seeds(tmp_path_factory):
    return dry_run(tmp_path_factory.mktemp("seeds"), train={"seeds": [0, 1, 2]})


def test_three_seeds_train_three_models_with_only_the_seed_changed(with_seeds):
    text, planned = with_seeds
    assert planned["train_model"] == 1 and planned["train_model_seed"] == 2
    assert planned["tensors_dump"] + planned["tensors_dump_seed"] == 3
    assert planned["score_pairs"] + planned["score_pairs_seed"] == 3 and planned["seeds_summary"] == 1
    commands = train_commands(text)
    assert set(commands) == {"results/tiny/train", "results/tiny/seeds/seed_1/train",
                             "results/tiny/seeds/seed_2/train"}
    main = commands.pop("results/tiny/train")
    assert main["seed"] == 0 and "seeds" not in main and "resume" not in main
    for seed in (1, 2):
        assert commands[f"results/tiny/seeds/seed_{seed}/train"] == {**main, "seed": seed}


def test_the_report_reads_the_seeds_summary(with_seeds):
    text, _ = with_seeds
    summary = job_block(text, "seeds_summary")
    for path in ("results/tiny/scores/summary.json", "results/tiny/seeds/seed_2/scores/summary.json",
                 "results/tiny/seeds/seed_1/train/history.csv", "results/tiny/train/retrieval.json"):
        assert path in summary
    report = job_block(text, "report_html")
    assert "results/tiny/seeds/summary.json" in report and "results/tiny/seeds/seed_scores.csv" in report
    assert re.search(r"vgsalign report-html .*--seeds-dir results/tiny/seeds ", text)
    assert re.search(r"vgsalign seeds-summary --seeds 0 1 2 ", text)


def test_a_seed_listed_twice_or_equal_to_train_seed_is_trained_once(tmp_path):
    text, planned = dry_run(tmp_path, train={"seed": 3, "seeds": [1, 3, 1]})
    assert planned["train_model"] == 1 and planned["train_model_seed"] == 1
    assert set(train_commands(text)) == {"results/tiny/train", "results/tiny/seeds/seed_1/train"}
    assert re.search(r"vgsalign seeds-summary --seeds 3 1 ", text)


def test_without_seeds_one_model_and_no_summary(tmp_path):
    text, planned = dry_run(tmp_path)
    assert not set(SEED_RULES) & set(planned) and planned["train_model"] == 1
    assert "seeds" not in job_block(text, "report_html") and "--seeds-dir" not in text
