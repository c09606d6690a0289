"""Running tasks through Parsl under the ledger: skip what is done, retry what was lost.

`TaskSpec` describes one unit of work: a plain function of `tasks/` with its keyword
arguments, the executor label it runs on, and a `verify` function that reads its final
outputs from disk (the function creates its output directory itself). `run_stage` submits
every spec whose outputs are not already complete, records each state change in the ledger
(those within 0.2 s of each other in one transaction), resubmits transient failures (a lost
worker or node, a walltime) after a backoff that holds up nothing else, and records
deterministic failures with their reason.

Stages overlap through `follow_up`: when a task is done (now, or found done on disk by a
rerun), `follow_up(spec, outputs)` may return new specs, which are submitted at once —
the labels of one exploration run start while the other runs are still going.
"""

from __future__ import annotations

import datetime
import heapq
import itertools
import os
import queue
import signal
import socket
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from campaign.ledger import Completion, Ledger

Verify = Callable[[Path], dict[str, Any] | None]

#: Exceptions that mean the worker, not the task, failed: retried with backoff.
TRANSIENT_ERRORS = {"ManagerLost", "WorkerLost", "BadStateException", "WalltimeExceeded",
                    "ExecutorError", "ScalingFailed", "ConnectionError", "TimeoutError"}


def on_worker(function: Callable[..., Any], kwargs: dict[str, Any]) -> tuple[str, float, float]:
    """What every Parsl task runs: the task's function, timed where it runs; returns the
    worker's host, when the task started there (seconds since the epoch, its clock) and its
    wall time. The driver's clock would count the time a task waited for a free worker as well
    (a property queued behind GPAW labels showed 1,000 s for a 24 s run). Its outputs are on
    disk, verified by the driver; its return value is not needed. A plain tuple: the no-op
    benchmark's throughput is the cost of each byte sent back."""
    started, clock = time.time(), time.perf_counter()
    function(**kwargs)
    return _WORKER_HOST, started, time.perf_counter() - clock


#: The worker's host, looked up once per process.
_WORKER_HOST = socket.gethostname()


class StageFailed(RuntimeError):
    """More tasks of a stage failed than the campaign's failure-ratio limit allows."""


@dataclass
class TaskSpec:
    task_id: str
    kind: str
    name: str
    executor: str
    function: Callable[..., Any]
    kwargs: dict[str, Any]
    output_dir: Path
    verify: Verify
    parameters: dict[str, Any] = field(default_factory=dict)
    stage: str | None = None  # ledger stage; default: the stage that runs it


@dataclass
class StageResult:
    outputs: dict[str, dict[str, Any]]  # task_id -> outputs of the done tasks
    failed: dict[str, str]  # task_id -> error
    skipped: int  # already done before this run
    ran: int
    kinds: dict[str, str] = field(default_factory=dict)  # task_id -> kind, for every spec seen

    def outputs_of(self, kind: str) -> dict[str, dict[str, Any]]:
        return {t: o for t, o in self.outputs.items() if self.kinds.get(t) == kind}


FollowUp = Callable[[TaskSpec, dict[str, Any]], list[TaskSpec]]


def is_transient(error: BaseException) -> bool:
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & TRANSIENT_ERRORS)


class _Stage:
    """The state of one `run_stage` call; completions arrive on a queue (O(1) per task)."""

    def __init__(self, name: str, ledger: Ledger, max_retries: int, backoff_s: float, follow_up: FollowUp | None,
                 progress: Progress):
        self.name, self.ledger, self.max_retries, self.backoff_s = name, ledger, max_retries, backoff_s
        self.follow_up, self.progress = follow_up, progress
        self.result = StageResult({}, {}, 0, 0)
        self.done: "queue.Queue[Future]" = queue.Queue()
        self.in_flight: dict[Future, tuple[TaskSpec, int]] = {}
        self.retries: list[tuple[float, int, TaskSpec, int]] = []  # (when, order, spec, attempt), a heap
        self.apps: dict[str, Any] = {}  # executor label -> its Parsl app of `on_worker`
        self.total = 0
        self.stage_of: dict[str, str] = {}  # task id -> ledger stage (follow-ups have their own)
        self.already: set[str] = set()  # done or failed before this run
        self.bar = progress.add_task(name, total=0, note="")
        self._submitted: list[tuple[str, str, float]] = []  # ledger writes not yet made, made together
        self._completed: list[Completion] = []

    def record(self) -> None:
        """The submissions and completions since the last call, into the ledger in two statements."""
        if self._submitted:
            ids, executors, at = zip(*self._submitted)
            self.ledger.mark_running_many(ids, executors, at)
            self._submitted.clear()
        if self._completed:
            self.ledger.mark_done_many(self._completed)
            self._completed.clear()

    @property
    def unrecorded(self) -> int:
        return len(self._submitted) + len(self._completed)

    @property
    def busy(self) -> bool:
        return bool(self.in_flight or self.retries)

    def admit(self, specs: list[TaskSpec]) -> None:
        """Register specs; record those already complete (and their follow-ups); submit the rest."""
        if not specs:
            return
        self.total += len(specs)
        self.progress.update(self.bar, total=self.total)
        with self.ledger.batch():
            follow = self._admit_now(specs)
            self.record()
        self.admit(follow)

    def _admit_now(self, specs: list[TaskSpec]) -> list[TaskSpec]:
        rows = self.ledger.register_many([(s.task_id, s.kind, s.stage or self.name, s.name, s.parameters)
                                          for s in specs])
        present = _existing_directories(specs)
        follow: list[TaskSpec] = []
        for spec in specs:
            self.result.kinds[spec.task_id] = spec.kind
            self.stage_of[spec.task_id] = spec.stage or self.name
            row = rows[spec.task_id]
            outputs = spec.verify(spec.output_dir) if spec.output_dir in present else None
            if outputs is not None:
                if row.state != "done":
                    self.ledger.mark_done(spec.task_id, outputs)  # finished after an earlier driver stopped
                    self.ledger.log_event(self.name, f"{spec.name}: found complete on disk, recorded without rerunning")
                self.result.outputs[spec.task_id] = outputs
                self.result.skipped += 1
                self.already.add(spec.task_id)
                self.progress.advance(self.bar)
                if self.follow_up:
                    follow += self.follow_up(spec, outputs)
            elif row.state == "failed" and not row.transient:
                self.result.failed[spec.task_id] = row.error or "failed"  # deterministic: not retried blindly
                self.result.skipped += 1
                self.already.add(spec.task_id)
                self.progress.advance(self.bar)
            else:
                self.submit(spec, 1)
        return follow

    def submit(self, spec: TaskSpec, attempt: int) -> None:
        from parsl import python_app

        if spec.executor not in self.apps:
            self.apps[spec.executor] = python_app(on_worker, executors=[spec.executor])
        self._submitted.append((spec.task_id, spec.executor, time.time()))
        future = self.apps[spec.executor](spec.function, spec.kwargs)
        self.in_flight[future] = (spec, attempt)
        future.add_done_callback(self.done.put)

    def submit_due_retries(self) -> None:
        while self.retries and self.retries[0][0] <= time.monotonic():
            _, _, spec, attempt = heapq.heappop(self.retries)
            self.submit(spec, attempt)

    def next_retry_in(self) -> float | None:
        return max(0.0, self.retries[0][0] - time.monotonic()) if self.retries else None

    def finish(self, future: Future) -> None:
        spec, attempt = self.in_flight.pop(future)
        error = future.exception()
        if error is None:
            outputs = spec.verify(spec.output_dir)
            if outputs is not None:
                self._completed.append(Completion(spec.task_id, outputs, *future.result()))
                self.result.outputs[spec.task_id] = outputs
                self.result.ran += 1
                self.progress.advance(self.bar)
                if self.follow_up:
                    self.admit(self.follow_up(spec, outputs))
                return
            error = RuntimeError(f"task returned but its outputs in {spec.output_dir} are incomplete")
        transient = is_transient(error)
        message = f"{type(error).__name__}: {error}"
        if transient and attempt > self.max_retries:
            message = (f"lost {attempt} times ({message}): a task that runs longer than its block's walltime is "
                       f"lost at every walltime; raise the executor's walltime (or split the task)")
        elif transient:
            self.ledger.log_event(self.name, f"{spec.name}: attempt {attempt} lost ({message}); retrying")
            # later, without holding up the completions of the other tasks meanwhile
            heapq.heappush(self.retries, (time.monotonic() + self.backoff_s * 2 ** (attempt - 1), next(_ORDER),
                                          spec, attempt + 1))
            return
        detail = "".join(traceback.format_exception(error)[-3:]) if not transient else message
        self.record()  # its submission first
        self.ledger.mark_failed(spec.task_id, detail, transient)
        self.ledger.log_event(self.name, f"{spec.name}: failed ({message})")
        self.result.failed[spec.task_id] = message
        self.progress.advance(self.bar)
        self.progress.update(self.bar, note=f"[red]{len(self.result.failed)} failed")


_ORDER = itertools.count()
#: Completions taken from the queue in one pass, and ledger writes held back, at most; and how
#: long those writes may wait (they are recorded together). A killed driver loses none of them:
#: what finished is found on disk and verified by the next run, what was submitted and not yet
#: marked running is submitted again.
GROUP_COMMIT = 500
RECORD_EVERY_S = 0.2


def _existing_directories(specs: list[TaskSpec]) -> set[Path]:
    """The specs' output directories that exist: one listing per parent, not a stat per task."""
    present: set[Path] = set()
    for parent in {spec.output_dir.parent for spec in specs}:
        try:
            present |= {parent / name for name in os.listdir(parent)}
        except (FileNotFoundError, NotADirectoryError):
            continue
    return present


class ProgressLines:
    """Where there is no terminal (a batch job's log, `nohup`): one plain line per ledger stage
    (a stage's follow-ups, such as the labels of an exploration, have their own) at its start
    and end and at most every `every_s` seconds meanwhile, saying where it stands."""

    def __init__(self, stage: str, state: "_Stage", report: Callable[[str], None], every_s: float):
        self.stage, self.state, self.report, self.every_s = stage, state, report, every_s
        self.started = self.last = time.monotonic()

    def due_in(self) -> float:
        return max(0.0, self.last + self.every_s - time.monotonic())

    def line(self, final: bool = False) -> None:
        state, result = self.state, self.state.result
        running = Counter(state.stage_of[spec.task_id] for spec, _ in state.in_flight.values())
        retrying = Counter(state.stage_of[spec.task_id] for _, _, spec, _ in state.retries)
        stages = Counter(state.stage_of.values())
        done = Counter(state.stage_of[t] for t in result.outputs)
        failed = Counter(state.stage_of[t] for t in result.failed)
        already = Counter(state.stage_of[t] for t in state.already)
        elapsed = time.monotonic() - self.started
        for stage in stages or {self.stage: 0}:
            total, ran = stages[stage], done[stage] + failed[stage] - already[stage]
            left = total - done[stage] - failed[stage]
            eta = "" if final else f", ETA {_duration(elapsed / ran * left) if ran else '-'}"
            self.report(f"{stage}: {done[stage]}/{total} done ({already[stage]} already), {failed[stage]} failed, "
                        f"{running[stage]} running, {retrying[stage]} to retry; elapsed {_duration(elapsed)}{eta}")
        self.last = time.monotonic()

    def tick(self) -> None:
        if self.due_in() == 0.0:
            self.line()


def _duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


@dataclass(frozen=True)
class Display:
    """How a stage shows its progress: a bar on a terminal, or plain lines (`report`) in a log."""

    bar: bool = False
    report: Callable[[str], None] | None = None
    every_s: float = 30.0


def run_stage(stage: str, specs: list[TaskSpec], ledger: Ledger, max_retries: int = 2,
              failure_ratio_limit: float = 0.05, display: Display = Display(),
              backoff_s: float = 2.0, follow_up: FollowUp | None = None,
              follow_up_stages: Collection[str] | None = None) -> StageResult:
    """Run a stage (and the follow-ups of its tasks) to completion.

    `follow_up_stages`: the ledger stages the follow-ups add tasks to, when the caller knows;
    the others are complete from the start, and their superseded pending tasks are removed
    then, not only at the end (`Ledger.forget_pending`).

    Raises StageFailed when, for any kind of task, the fraction that failed exceeds the limit.
    """
    progress = Progress(TextColumn(f"[bold]{stage:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[note]}"), disable=not display.bar, transient=False)
    with progress:
        state = _Stage(stage, ledger, max_retries, backoff_s, follow_up, progress)
        if follow_up is None or follow_up_stages is not None:
            _forget_superseded(ledger, stage, {s.stage or stage for s in specs} - set(follow_up_stages or ()),
                               {s.task_id for s in specs})
        state.admit(specs)
        lines = ProgressLines(stage, state, display.report, display.every_s) if display.report else None
        if lines:
            lines.line()
        recorded = time.monotonic()
        while state.busy:
            record_in = max(0.0, recorded + RECORD_EVERY_S - time.monotonic()) if state.unrecorded else None
            waits = [w for w in (state.next_retry_in(), lines.due_in() if lines else None, record_in)
                     if w is not None]
            try:
                first = state.done.get(timeout=min(waits) if waits else None)
            except queue.Empty:
                first = None
            if first is not None:
                state.finish(first)
            for _ in range(GROUP_COMMIT - 1):
                try:
                    state.finish(state.done.get_nowait())
                except queue.Empty:
                    break
            state.submit_due_retries()
            if time.monotonic() - recorded >= RECORD_EVERY_S or state.unrecorded >= GROUP_COMMIT:
                with ledger.batch():  # what arrived since the last time: one transaction
                    state.record()
                recorded = time.monotonic()
            if lines:
                lines.tick()
        with ledger.batch():
            state.record()
        # the follow-ups' stages are complete now too
        _forget_superseded(ledger, stage, set(state.stage_of.values()), state.stage_of.keys())
        if lines:
            lines.line(final=True)
    result = state.result
    for kind in sorted(set(result.kinds.values())):
        of_kind = [t for t, k in result.kinds.items() if k == kind]
        failed = [t for t in of_kind if t in result.failed]
        ratio = len(failed) / len(of_kind)
        if ratio > failure_ratio_limit:
            reasons = "\n".join(f"  {t}: {(result.failed[t] or '').splitlines()[0]}" for t in failed[:10])
            raise StageFailed(f"stage '{stage}': {len(failed)} of {len(of_kind)} {kind} tasks failed "
                              f"({ratio:.0%} > limit {failure_ratio_limit:.0%}):\n{reasons}")
    return result


def _forget_superseded(ledger: Ledger, stage: str, stages: set[str], tasks: Collection[str]) -> None:
    """The pending tasks of `stages` that are not `tasks`, out of the ledger (`Ledger.forget_pending`)."""
    forgotten = ledger.forget_pending(stages, tasks)
    if forgotten:
        ledger.log_event(stage, f"{forgotten} pending tasks of {', '.join(sorted(stages))} that this config no longer "
                                f"makes (an earlier config's or models') removed from the ledger")


@contextmanager
def spared_by_ctrl_c() -> Iterator[None]:
    """Start helpers that ignore SIGINT. A terminal's Ctrl-C reaches its whole foreground process
    group, where Dask's local workers run, which would die of it mid-task. Helpers started here
    inherit SIG_IGN (Python keeps an ignored SIGINT ignored) and are stopped by the driver's
    cleanup instead. (Parsl's interchange has a group of its own: `campaign.interchange`.)"""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
