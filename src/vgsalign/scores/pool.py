"""Running the chunks: in this process, or in worker processes that fail loudly.

Each worker process gets its own pipe and one chunk at a time, so the parent always
knows which chunk a worker holds. The parent waits on the pipes and on the processes'
sentinels together: a worker that dies (a kill, the out-of-memory killer) stops the step
at once with one line naming the chunk and the signal, instead of waiting forever for a
result that will never come. The job reaches forked workers without pickling; under
the spawn start method it is pickled once per worker.
"""

from __future__ import annotations

import multiprocessing
import signal
import traceback
from multiprocessing.connection import Connection, wait
from typing import Iterator

from ..errors import InputError
from ..runtime import progress_bar
from .plan import ScoringJob, Unit
from .worker import ChunkResult, WorkerState, single_thread_blas


def describe_chunk(index: int, chunks: list[list[Unit]], job: ScoringJob) -> str:
    chunk = chunks[index]
    first, last = job.info.utt_ids[chunk[0][0]], job.info.utt_ids[chunk[-1][0]]
    return f"chunk {index + 1}/{len(chunks)} ({len(chunk)} utterances, {first} .. {last})"


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.Signals._value2member_map_ else str(-exitcode)
        hint = " (from outside the step, often the out-of-memory killer)" if -exitcode == signal.SIGKILL else ""
        return f"killed by signal {name}{hint}"
    return f"exited with status {exitcode}"


def _worker_main(job: ScoringJob, conn: Connection) -> None:
    """A worker's life: one WorkerState, then (index, chunk) in, (index, kind, payload) out."""
    with single_thread_blas():
        state = WorkerState(job)
        try:
            while (message := conn.recv()) is not None:
                index, chunk = message
                try:
                    conn.send((index, "result", state.score_chunk(chunk)))
                except InputError as err:
                    conn.send((index, "input_error", (err.where, err.problem)))
                except Exception:                                   # noqa: BLE001 - reported by the parent
                    conn.send((index, "error", traceback.format_exc()))
        finally:
            state.close()


def _unpack(index: int, kind: str, payload, describe) -> ChunkResult:
    if kind == "result":
        return payload
    if kind == "input_error":
        raise InputError(*payload)
    raise RuntimeError(f"scoring {describe(index)} failed in a worker:\n{payload}")


def run_chunks(job: ScoringJob, chunks: list[list[Unit]], workers: int) -> Iterator[tuple[int, ChunkResult]]:
    """(chunk index, result) of every chunk, in the order they finish."""
    if workers <= 1 or len(chunks) <= 1:
        yield from _run_here(job, chunks)
    else:
        yield from _run_in_workers(job, chunks, min(workers, len(chunks)))


def _run_here(job: ScoringJob, chunks: list[list[Unit]]) -> Iterator[tuple[int, ChunkResult]]:
    state = WorkerState(job)
    try:
        with single_thread_blas(), progress_bar(total=len(chunks), desc="scoring", unit="chunk") as bar:
            for index, chunk in enumerate(chunks):
                yield index, state.score_chunk(chunk)
                bar.update(1)
    finally:
        state.close()


def _run_in_workers(job: ScoringJob, chunks: list[list[Unit]], workers: int) -> Iterator[tuple[int, ChunkResult]]:
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    processes, conns, holding = [], [], {}        # holding: worker number -> chunk index it was given
    try:
        for _ in range(workers):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_worker_main, args=(job, child_end), daemon=True)
            process.start()
            child_end.close()
            processes.append(process)
            conns.append(parent_end)
        pending = iter(range(len(chunks)))

        def hand_out(worker: int) -> None:
            index = next(pending, None)
            if index is not None:
                holding[worker] = index
            try:
                conns[worker].send(None if index is None else (index, chunks[index]))
            except OSError:                       # the worker died between two chunks
                processes[worker].join(timeout=5)
                if index is None:
                    return
                raise _died(worker, processes[worker], index, chunks, job) from None

        for worker in range(workers):
            hand_out(worker)
        with progress_bar(total=len(chunks), desc="scoring", unit="chunk") as bar:
            while holding:
                busy = list(holding)
                ready = wait([conns[w] for w in busy] + [processes[w].sentinel for w in busy])
                for worker in busy:
                    conn, process = conns[worker], processes[worker]
                    if conn in ready or conn.poll():
                        try:
                            index, kind, payload = conn.recv()
                        except EOFError:                 # the worker closed its end as it died
                            process.join(timeout=5)
                            raise _died(worker, process, holding[worker], chunks, job) from None
                        del holding[worker]
                        result = _unpack(index, kind, payload, lambda i: describe_chunk(i, chunks, job))
                        hand_out(worker)
                        bar.update(1)
                        yield index, result
                    elif process.sentinel in ready:
                        process.join(timeout=5)
                        raise _died(worker, process, holding[worker], chunks, job)
    finally:
        for conn in conns:
            conn.close()
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join(timeout=10)


def _died(worker: int, process, index: int, chunks: list[list[Unit]], job: ScoringJob) -> InputError:
    return InputError(None, f"scoring worker {worker + 1} (pid {process.pid}) died while scoring "
                            f"{describe_chunk(index, chunks, job)}: {_exit_reason(process.exitcode)}; "
                            "nothing was written")
