import subprocess
import sys

import pytest
import torch

from vgsalign.errors import InputError
from vgsalign.train import device as device_mod
from vgsalign.train.device import claim_device, pick_device, release_claims, try_claim, visible_names


@pytest.fixture(autouse=True)
def no_claims():
    release_claims()
    yield
    release_claims()


def claim(count, visible, directory, free=None, lines=None):
    return claim_device(count, visible=visible, directory=directory,
                        free_memory=free or (lambda i: 0), log=(lines.append if lines is not None else print))


def test_one_visible_device_is_used_without_a_claim(tmp_path):
    assert claim(1, "3", tmp_path / "locks") == 0
    assert not (tmp_path / "locks").exists()


def test_each_job_gets_its_own_device(tmp_path):
    other = try_claim("5", tmp_path)  # another job holds the device CUDA_VISIBLE_DEVICES calls 5
    assert other is not None
    assert claim(3, "5,6,7", tmp_path) == 1  # cuda:1 is device 6
    assert claim(3, "5,6,7", tmp_path) == 1  # the claim holds for the process
    assert try_claim("6", tmp_path) is None  # and others see it
    assert try_claim("7", tmp_path) is not None
    other.close()


def test_claims_follow_the_visible_list_not_the_cuda_index(tmp_path):
    held = try_claim("0", tmp_path)
    # this job sees physical devices 2 and 0: its cuda:0 (device 2) is free
    assert claim(2, "2,0", tmp_path) == 0
    held.close()


def test_all_claimed_shares_the_device_with_most_free_memory(tmp_path):
    held = [try_claim(name, tmp_path) for name in ("0", "1", "2")]
    lines = []
    free = {0: 10, 1: 30, 2: 20}
    assert claim(3, None, tmp_path, free=free.__getitem__, lines=lines) == 1
    assert len(lines) == 1 and "all 3 visible GPUs are claimed" in lines[0] and "cuda:1" in lines[0]
    for h in held:
        h.close()


def test_a_dead_process_leaves_no_claim(tmp_path):
    code = ("import sys; from pathlib import Path; from vgsalign.train.device import try_claim;"
            f"h = try_claim('0', Path({str(tmp_path)!r})); sys.exit(0 if h else 1)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert claim(2, "0,1", tmp_path) == 0  # its lock went with it


def test_claims_across_processes(tmp_path):
    code = ("import time; from pathlib import Path; from vgsalign.train.device import claim_device;"
            f"i = claim_device(2, visible='0,1', directory=Path({str(tmp_path)!r}), free_memory=lambda i: 0, log=print);"
            "print(i, flush=True); time.sleep(30)")
    first = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "0"
        assert claim(2, "0,1", tmp_path) == 1
    finally:
        first.kill()
        first.wait()


def test_visible_names():
    assert visible_names(2, "GPU-aa, GPU-bb") == ["GPU-aa", "GPU-bb"]
    assert visible_names(2, None) == ["0", "1"]
    assert visible_names(2, "") == ["0", "1"]


def test_pick_device_on_the_cpu_and_bad_names(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(InputError, match="no CUDA device"):
        pick_device("cuda")
    with pytest.raises(InputError, match="train.device"):
        pick_device("gpu")


def test_pick_device_with_faked_gpus(monkeypatch, tmp_path):
    chosen = []
    monkeypatch.setenv(device_mod.LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    held = try_claim("3", tmp_path)
    assert pick_device("auto") == torch.device("cuda", 1)
    assert chosen == [1]
    held.close()
