"""Cluster job sizes grow with the inputs and with every retry."""

from vgsalign.sizing import JobSize, input_mb


def test_sizes_grow_with_input_and_attempt(tmp_path):
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    small.write_bytes(b"x" * 1_000_000)
    big.write_bytes(b"x" * 10_000_000)
    size = JobSize(mem_mb_base=1000, runtime_min_base=10, mem_mb_per_input_mb=10, runtime_min_per_input_mb=1)
    assert input_mb([str(small), str(tmp_path / "missing")]) == 1.0
    assert size.mem_mb(None, [str(small)]) == 1010
    assert size.mem_mb(None, [str(big)]) == 1100
    assert size.mem_mb(None, [str(big)], attempt=2) == 1650      # half as much again on a retry
    assert size.runtime(None, [str(big)]) == 20
    assert size.runtime(None, [str(big)], attempt=3) == 60


def test_a_dry_run_sizes_missing_inputs_at_the_base():
    size = JobSize(mem_mb_base=3000, runtime_min_base=20, mem_mb_per_input_mb=0.5)
    assert size.mem_mb(None, ["/nonexistent/pairs.csv"]) == 3000


def test_a_streaming_job_is_sized_by_the_files_it_holds_not_their_number(tmp_path):
    from vgsalign.sizing import StreamingJobSize

    shards = []
    for k in range(10):
        shard = tmp_path / f"shard_{k:05d}.h5"
        shard.write_bytes(b"x" * (1_000_000 * (k + 1)))       # 1 to 10 MB
        shards.append(str(shard))
    size = StreamingJobSize(mem_mb_base=100, runtime_min_base=10, mem_mb_per_input_mb=2.0,
                            runtime_min_per_input_mb=1.0, files_held=2)
    assert size.mem_mb(None, shards) == 100 + 2 * (10 + 9)          # the two largest shards
    assert size.mem_mb(None, shards + shards) == size.mem_mb(None, shards)
    assert size.runtime(None, shards) == 10 + 55                    # all of them
    assert size.mem_mb(None, shards, attempt=3) == int((100 + 38) * 2.25)
