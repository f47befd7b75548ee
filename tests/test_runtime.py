"""The runtime module: torch threads capped at the usable CPUs, cgroup memory limits, progress lines."""

import os

import torch

from vgsalign.runtime import set_torch_threads, usable_cpus


def test_threads_are_capped_at_the_usable_cpus():
    before = torch.get_num_threads()
    try:
        assert usable_cpus() == len(os.sched_getaffinity(0))
        assert set_torch_threads(usable_cpus() + 6) == usable_cpus()
        assert set_torch_threads(1) == 1
        assert set_torch_threads(0) == 1          # 0 leaves the current setting
    finally:
        torch.set_num_threads(before)


def write_cgroup(tmp_path, lines: str):
    proc = tmp_path / "proc_cgroup"
    proc.write_text(lines)
    return proc


def test_cgroup_v2_limit_minus_usage(tmp_path):
    from vgsalign.runtime import cgroup_memory_left

    root = tmp_path / "cg"
    job = root / "slurm/job_7"
    job.mkdir(parents=True)
    (job / "memory.max").write_text("4000000000\n")
    (job / "memory.current").write_text("1000000000\n")
    (root / "slurm/memory.max").write_text("max\n")          # a parent with no limit
    proc = write_cgroup(tmp_path, "0::/slurm/job_7\n")
    assert cgroup_memory_left(proc_cgroup=proc, root=root) == 3_000_000_000


def test_cgroup_v1_takes_the_tightest_ancestor(tmp_path):
    from vgsalign.runtime import cgroup_memory_left

    root = tmp_path / "cg"
    step = root / "memory/slurm/uid_0/job_7/step_0"
    step.mkdir(parents=True)
    (step / "memory.limit_in_bytes").write_text("9223372036854771712\n")   # v1's "no limit"
    (step / "memory.usage_in_bytes").write_text("5\n")
    job = step.parent
    (job / "memory.limit_in_bytes").write_text("2000\n")
    (job / "memory.usage_in_bytes").write_text("500\n")
    proc = write_cgroup(tmp_path, "4:memory:/slurm/uid_0/job_7/step_0\n3:cpuset:/\n")
    assert cgroup_memory_left(proc_cgroup=proc, root=root) == 1500


def test_no_cgroup_limit_is_none(tmp_path):
    from vgsalign.runtime import cgroup_memory_left, memory_available

    root = tmp_path / "cg"
    (root / "memory").mkdir(parents=True)
    (root / "memory/memory.limit_in_bytes").write_text("9223372036854771712\n")
    proc = write_cgroup(tmp_path, "4:memory:/\n")
    assert cgroup_memory_left(proc_cgroup=proc, root=root) is None
    assert cgroup_memory_left(proc_cgroup=tmp_path / "missing", root=root) is None
    assert memory_available() > 0            # this machine's MemAvailable, capped by its cgroup


def test_memory_available_honours_the_cgroup(monkeypatch):
    from vgsalign import runtime

    monkeypatch.setattr(runtime, "cgroup_memory_left", lambda: 1234)
    assert runtime.memory_available() == 1234


def test_plain_progress_lines_name_the_step_and_have_no_carriage_returns(monkeypatch):
    import io

    from vgsalign import runtime

    stream = io.StringIO()
    monkeypatch.setattr(runtime, "STEP", "features-audio")
    with runtime.LogLines(total=4, desc="captions", unit="cap", stream=stream, interval_s=0) as bar:
        for _ in range(4):
            bar.update(1)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines[0].startswith("features-audio: captions: 0/4 cap (0%)")
    assert "2/4 cap (50%)" in lines[2] and "eta" in lines[2]
    assert lines[-1].startswith("features-audio: captions: 4/4 cap (100%)")
