"""Resume safety and repeatability: same seed, same bytes; changed settings never resume silently."""

import json

import pytest

from tests.helpers.train import tiny_frames, tiny_model, tiny_train_settings, write_split
from vgsalign.errors import InputError
from vgsalign.train import loop
from vgsalign.train.loop import FrameSettings, TrainSettings, run_training
from vgsalign.train.resume import differences
from vgsalign.train.streaming import open_split


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    return write_split(root, "train", 32, seed=0, images_per_shard=8)


def train(split_files, out, log=None, **over):
    settings = TrainSettings(**tiny_train_settings(**{"epochs": 2, **over}))
    logs = [] if log is None else log
    run_training(open_split("train", *split_files), None, tiny_model(), settings, FrameSettings(**tiny_frames()), out,
                 log=logs.append)
    return logs


def test_same_seed_gives_identical_history(split, tmp_path):
    train(split, tmp_path / "a")
    train(split, tmp_path / "b")
    assert (tmp_path / "a/history.csv").read_bytes() == (tmp_path / "b/history.csv").read_bytes()
    train(split, tmp_path / "c", seed=1)
    assert (tmp_path / "a/history.csv").read_bytes() != (tmp_path / "c/history.csv").read_bytes()


def test_changed_lr_with_resume_stops_naming_lr(split, tmp_path):
    train(split, tmp_path)
    before = (tmp_path / "history.csv").read_bytes()
    with pytest.raises(InputError) as err:
        train(split, tmp_path, resume=True, lr=1e-2)
    message = str(err.value)
    assert "\n" not in message and "state/last.pt: cannot resume" in message
    assert "train.lr 0.003 -> 0.01" in message and "train.seed" not in message
    assert (tmp_path / "history.csv").read_bytes() == before  # nothing was overwritten


def test_fresh_if_changed_retrains_and_says_so(split, tmp_path):
    train(split, tmp_path / "old")
    logs = train(split, tmp_path / "old", resume="fresh_if_changed", lr=1e-2, margin=0.2)
    assert any("starting fresh" in line and "train.lr" in line and "train.margin" in line for line in logs)
    train(split, tmp_path / "new", lr=1e-2, margin=0.2)
    assert (tmp_path / "old/history.csv").read_bytes() == (tmp_path / "new/history.csv").read_bytes()


def test_more_epochs_continue_and_operational_keys_do_not_count(split, tmp_path):
    train(split, tmp_path / "full", epochs=3)
    train(split, tmp_path / "part", epochs=2)
    logs = train(split, tmp_path / "part", epochs=3, resume=True, device="cpu")
    assert any("resuming" in line and "after epoch 2" in line for line in logs)
    assert (tmp_path / "full/history.csv").read_bytes() == (tmp_path / "part/history.csv").read_bytes()
    with pytest.raises(InputError, match="trained 3 epochs, more than 2"):
        train(split, tmp_path / "part", epochs=2, resume=True)


def test_changed_training_data_is_a_difference(split, tmp_path):
    train(split, tmp_path)
    audio, visual = split
    with pytest.raises(InputError, match=r"settings differ from the checkpoint's: data.captions_and_images '\w+' -> '\w+'; set"):
        train((audio[:-1], visual[:-1]), tmp_path, resume=True)  # a shard fewer, same settings


def test_differences_lists_both_sides():
    assert differences({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == ["b 2 -> 3", "c '(unset)' -> 4"]


def test_cli_resume_flag_overrides_the_slice(split, tmp_path):
    audio, visual = split
    argv = ["--train-audio", *map(str, audio), "--train-visual", *map(str, visual),
            "--model", json.dumps(tiny_model().__dict__), "--frames", json.dumps(tiny_frames()), "--out-dir", str(tmp_path)]
    slice_ = {k: v for k, v in tiny_train_settings(epochs=1).items() if k != "resume"}
    assert loop.main(argv + ["--train", json.dumps(slice_)]) == 0
    changed = json.dumps({**slice_, "lr": 0.01})
    from vgsalign.cli import run_main

    assert run_main("train-model", loop.main, argv + ["--train", changed, "--resume", "True"]) == 2
    assert run_main("train-model", loop.main, argv + ["--train", changed, "--resume", "fresh_if_changed"]) == 0


def test_a_diverging_model_stops_at_its_batch_in_one_line(split, tmp_path):
    with pytest.raises(InputError, match=r"^train.lr: training loss became (nan|inf) at epoch 1, batch \d+, from finite inputs"):
        train(split, tmp_path, lr=1e30, epochs=1)


def test_one_line_per_epoch_with_losses_and_recall(split, tmp_path):
    logs = train(split, tmp_path)
    epoch_lines = [line for line in logs if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and all("train_loss" in line and "R@10 a2i" in line for line in epoch_lines)


def test_an_unreadable_state_is_refused_or_replaced(split, tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state/last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="state/last.pt: not a readable vgsalign checkpoint"):
        train(split, tmp_path, resume=True, epochs=1)
    logs = train(split, tmp_path, resume="fresh_if_changed", epochs=1)
    assert any("not a readable vgsalign checkpoint" in line and "starting fresh" in line for line in logs)
    assert (tmp_path / "history.csv").is_file()
