"""Running the chunks: in this process, or in worker processes that fail loudly.

The worker processes start (`WorkerPool`) as soon as the tensor file has been
inspected, before the pairs and annotations are read: a forked worker then shares
nothing that grows with the pairs, and each chunk reaches it as a `ChunkTask` with its
own pairs and annotations. Under the spawn start method the setup is pickled once per
worker.

Each worker process gets its own pipe and one chunk at a time, so the parent always
knows which chunk a worker holds. The parent waits on the pipes and on the processes'
sentinels together: a worker that dies (a kill, the out-of-memory killer) stops the step
at once with one line naming the chunk and the signal, instead of waiting forever for a
result that will never come.
"""

from __future__ import annotations

import multiprocessing
import signal
import traceback
from multiprocessing.connection import Connection, wait
from typing import Iterator

from ..errors import InputError
from ..runtime import progress_bar
from .plan import ScoringPlan, ScoringSetup
from .worker import ChunkResult, WorkerState, single_thread_blas


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.Signals._value2member_map_ else str(-exitcode)
        hint = " (from outside the step, often the out-of-memory killer)" if -exitcode == signal.SIGKILL else ""
        return f"killed by signal {name}{hint}"
    return f"exited with status {exitcode}"


def _worker_main(setup: ScoringSetup, conn: Connection) -> None:
    """A worker's life: one WorkerState, then chunk tasks in, (index, kind, payload) out."""
    with single_thread_blas():
        state = WorkerState(setup)
        try:
            while (task := conn.recv()) is not None:
                try:
                    conn.send((task.index, "result", state.score_chunk(task)))
                except InputError as err:
                    conn.send((task.index, "input_error", (err.where, err.problem)))
                except Exception:                                   # noqa: BLE001 - reported by the parent
                    conn.send((task.index, "error", traceback.format_exc()))
        finally:
            state.close()


def _unpack(index: int, kind: str, payload, describe) -> ChunkResult:
    if kind == "result":
        return payload
    if kind == "input_error":
        raise InputError(*payload)
    raise RuntimeError(f"scoring {describe(index)} failed in a worker:\n{payload}")


def run_here(plan: ScoringPlan) -> Iterator[tuple[int, ChunkResult]]:
    """(chunk index, result) of every chunk, scored in this process, in order."""
    state = WorkerState(plan.setup)
    try:
        with single_thread_blas(), progress_bar(total=plan.n_chunks, desc="scoring", unit="chunk") as bar:
            for index in range(plan.n_chunks):
                yield index, state.score_chunk(plan.task(index))
                bar.update(1)
    finally:
        state.close()


class WorkerPool:
    """`workers` scoring processes, started now and ended by close() (or the with block)."""

    def __init__(self, setup: ScoringSetup, workers: int):
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self.processes, self.conns = [], []
        try:
            for _ in range(workers):
                parent_end, child_end = context.Pipe()
                process = context.Process(target=_worker_main, args=(setup, child_end), daemon=True)
                process.start()
                child_end.close()
                self.processes.append(process)
                self.conns.append(parent_end)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        for process in self.processes:
            if process.is_alive():
                process.terminate()
            process.join(timeout=10)
        self.conns, self.processes = [], []

    def run(self, plan: ScoringPlan) -> Iterator[tuple[int, ChunkResult]]:
        """(chunk index, result) of every chunk of the plan, in the order they finish."""
        conns, processes = self.conns, self.processes
        pending = iter(range(plan.n_chunks))
        holding: dict[int, int] = {}              # worker number -> chunk index it was given

        def hand_out(worker: int) -> None:
            index = next(pending, None)
            if index is not None:
                holding[worker] = index
            try:
                conns[worker].send(None if index is None else plan.task(index))
            except OSError:                       # the worker died between two chunks
                processes[worker].join(timeout=5)
                if index is None:
                    return
                raise _died(worker, processes[worker], index, plan) from None

        for worker in range(len(processes)):
            hand_out(worker)
        with progress_bar(total=plan.n_chunks, desc="scoring", unit="chunk") as bar:
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
                            raise _died(worker, process, holding[worker], plan) from None
                        del holding[worker]
                        result = _unpack(index, kind, payload, plan.describe_chunk)
                        hand_out(worker)
                        bar.update(1)
                        yield index, result
                    elif process.sentinel in ready:
                        process.join(timeout=5)
                        raise _died(worker, process, holding[worker], plan)


def _died(worker: int, process, index: int, plan: ScoringPlan) -> InputError:
    return InputError(None, f"scoring worker {worker + 1} (pid {process.pid}) died while scoring "
                            f"{plan.describe_chunk(index)}: {_exit_reason(process.exitcode)}; "
                            "nothing was written")
