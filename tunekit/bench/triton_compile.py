"""Compiling many triton-fused kernels ahead of time: a worker process, a time limit, a JSON cache.

:class:`CompileRunner` sends :class:`~tunekit.kernels.triton_fused_aot.CompileJob` s to one worker
(``python -m tunekit.bench.triton_compile``, started without ``TRITON_INTERPRET`` so that Triton
compiles instead of interpreting), kills its process group when a compile passes the time limit,
and caches every result in a JSON file keyed by :attr:`CompileJob.key` (which carries the kernel's
source hash: after an edit of a template or a cell, its old entries no longer match and are
recompiled). ``workers > 1`` compiles in parallel.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tunekit.files import write_atomic
from tunekit.kernels.triton_fused_aot import Compiled, CompileJob

_RESULT = "tunekit-compiled "  # prefix of the worker's answer lines
# One compile of a large, spilling kernel takes ptxas up to a minute on a shared 2-core machine.
COMPILE_TIMEOUT_S = 180.0


class _Worker:
    """One compile process; a job at a time over JSON lines on its stdin/stdout."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tunekit.bench.triton_compile"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True,
        )  # fmt: skip
        self.job: CompileJob | None = None
        self.started = 0.0
        self.alive = True

    def send(self, job: CompileJob) -> None:
        self.job, self.started = job, time.monotonic()
        self.process.stdin.write(json.dumps(asdict(job)) + "\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        self.alive = False
        with contextlib.suppress(ProcessLookupError):  # the worker's own session and its ptxas only
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


class CompileRunner:
    """Compiles jobs in worker processes with a time limit, caching results by the job's key."""

    def __init__(self, cache_path: Path, timeout_s: float = COMPILE_TIMEOUT_S, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers: expected >= 1, received {workers!r}")
        self.cache_path = Path(cache_path)
        self.timeout_s = timeout_s
        self.workers = workers
        self.cache: dict[str, dict[str, Any]] = {}
        if self.cache_path.exists():
            self.cache = json.loads(self.cache_path.read_text(encoding="utf-8"))
        self.compiled_now = 0  # compiles this runner ran (not read from the cache)
        self._idle: list[_Worker] = []

    def cached(self, job: CompileJob) -> Compiled | None:
        entry = self.cache.get(job.key)
        return None if entry is None else Compiled(**entry)

    def cache_results(self) -> dict[str, Compiled]:
        """Every cached result by job key (this run's and earlier ones of current kernels alike)."""
        return {key: Compiled(**fields) for key, fields in self.cache.items()}

    def compile(self, job: CompileJob) -> Compiled:
        """The cached result, or a fresh compile."""
        return self.compile_all([job])[0]

    def compile_all(
        self, jobs: Sequence[CompileJob], progress: Callable[[str], None] | None = None
    ) -> list[Compiled]:
        """Results of every job in order; the missing ones compiled by up to ``workers`` processes,
        the cache saved after each (an interrupted run keeps what it finished)."""
        pending = [j for j in dict.fromkeys(jobs) if j.key not in self.cache][::-1]
        idle = self._idle  # workers outlive one call (a worker's start costs seconds of imports)
        busy: list[_Worker] = []
        try:
            while pending or busy:
                while pending and len(busy) < self.workers:
                    worker = idle.pop() if idle else _Worker()
                    worker.send(pending.pop())
                    busy.append(worker)
                worker = self._next_done(busy)
                busy.remove(worker)
                job, result = worker.job, self._receive(worker)
                if worker.alive:
                    idle.append(worker)
                self._store(job, result, progress)
        finally:
            for worker in busy:
                worker.kill()
        return [Compiled(**self.cache[j.key]) for j in jobs]

    def close(self) -> None:
        """End the idle workers."""
        for worker in self._idle:
            worker.close()
        self._idle.clear()

    def __enter__(self) -> CompileRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_done(self, busy: list[_Worker]) -> _Worker:
        import selectors

        with selectors.DefaultSelector() as selector:
            for worker in busy:
                selector.register(worker.process.stdout, selectors.EVENT_READ, worker)
            while True:
                now = time.monotonic()
                late = [w for w in busy if now - w.started > self.timeout_s]
                if late:
                    return late[0]
                wait = min(self.timeout_s - (now - w.started) for w in busy)
                events = selector.select(timeout=max(0.05, wait))
                if events:
                    return events[0][0].data

    def _receive(self, worker: _Worker) -> Compiled:
        """The worker's answer; a timeout or a crash is an error result (and the worker is killed)."""
        if time.monotonic() - worker.started > self.timeout_s:
            worker.kill()
            return Compiled(error=f"timeout after {self.timeout_s:.0f} s")
        while True:
            line = worker.process.stdout.readline()
            if not line:
                worker.kill()
                return Compiled(error="the compile worker exited")
            if line.startswith(_RESULT):  # anything else a library printed is not an answer
                return Compiled(**json.loads(line[len(_RESULT) :]))

    def _store(self, job: CompileJob, result: Compiled, progress: Callable[[str], None] | None) -> None:
        self.cache[job.key] = asdict(result)
        self.compiled_now += 1
        self.save()
        if progress:
            verdict = result.error or (f"spills {result.spill_bytes} B" if result.spill_bytes else "clean")
            progress(f"{job.key}: {result.registers} regs, {result.shared} B shared, {verdict}")

    def save(self) -> None:
        write_atomic(self.cache_path, json.dumps(self.cache, indent=0, sort_keys=True) + "\n")


def _serve(lines: Iterable[str]) -> None:
    """The worker's loop: a job per line in, a Compiled per line out (errors are results)."""
    from tunekit.kernels.triton_fused_aot import compile_job

    for line in lines:
        job = CompileJob(**json.loads(line))
        try:
            result = compile_job(job)
        except Exception as error:  # a failed compile is a result, not a crash of the sweep
            result = Compiled(error=f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
        sys.stdout.write(_RESULT + json.dumps(asdict(result)) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve(sys.stdin)
