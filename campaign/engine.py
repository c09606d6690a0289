"""Running tasks through Parsl under the ledger: skip what is done, retry what was lost.

`TaskSpec` describes one unit of work: a plain function of `tasks/` with its keyword
arguments, the executor label it runs on, and a `verify` function that reads its final
outputs from disk. `run_stage` submits every spec whose outputs are not already complete,
records each state change in the ledger, resubmits transient failures (a lost worker or
node, a walltime) with backoff, and records deterministic failures with their reason.
"""

from __future__ import annotations

import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from campaign.ledger import Ledger

Verify = Callable[[Path], dict[str, Any] | None]

#: Exceptions that mean the worker, not the task, failed: retried with backoff.
TRANSIENT_ERRORS = {"ManagerLost", "WorkerLost", "BadStateException", "WalltimeExceeded",
                    "ExecutorError", "ScalingFailed", "ConnectionError", "TimeoutError"}


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


@dataclass
class StageResult:
    outputs: dict[str, dict[str, Any]]  # task_id -> outputs of the done tasks
    failed: dict[str, str]  # task_id -> error
    skipped: int  # already done before this run
    ran: int


def is_transient(error: BaseException) -> bool:
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & TRANSIENT_ERRORS)


def run_stage(stage: str, specs: list[TaskSpec], ledger: Ledger, max_retries: int = 2,
              failure_ratio_limit: float = 0.05, show_progress: bool = True,
              backoff_s: float = 2.0) -> StageResult:
    """Run a stage to completion; raises StageFailed if the failure ratio exceeds the limit."""
    from parsl import python_app

    result = StageResult({}, {}, 0, 0)
    to_run: list[TaskSpec] = []
    for spec in specs:
        row = ledger.register(spec.task_id, spec.kind, stage, spec.name, spec.parameters)
        outputs = spec.verify(spec.output_dir) if spec.output_dir.exists() else None
        if outputs is not None:
            if row.state != "done":
                ledger.mark_done(spec.task_id, outputs)  # finished after an earlier driver stopped
                ledger.log_event(stage, f"{spec.name}: found complete on disk, recorded without rerunning")
            result.outputs[spec.task_id] = outputs
            result.skipped += 1
        elif row.state == "failed" and not row.transient:
            result.failed[spec.task_id] = row.error or "failed"  # deterministic: not retried blindly
            result.skipped += 1
        else:
            to_run.append(spec)

    apps: dict[tuple[Callable[..., Any], str], Any] = {}

    def submit(spec: TaskSpec) -> Future:
        key = (spec.function, spec.executor)
        if key not in apps:
            apps[key] = python_app(spec.function, executors=[spec.executor])
        spec.output_dir.mkdir(parents=True, exist_ok=True)
        ledger.mark_running(spec.task_id, spec.executor)
        return apps[key](**spec.kwargs)

    progress = Progress(TextColumn(f"[bold]{stage:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[note]}"), disable=not show_progress, transient=False)
    with progress:
        bar = progress.add_task(stage, total=len(specs), completed=result.skipped,
                                note=f"{result.skipped} already done" if result.skipped else "")
        pending: dict[Future, tuple[TaskSpec, int]] = {submit(spec): (spec, 1) for spec in to_run}
        while pending:
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in finished:
                spec, attempt = pending.pop(future)
                error = future.exception()
                if error is None:
                    outputs = spec.verify(spec.output_dir)
                    if outputs is not None:
                        ledger.mark_done(spec.task_id, outputs)
                        result.outputs[spec.task_id] = outputs
                        result.ran += 1
                        progress.advance(bar)
                        continue
                    error = RuntimeError(f"task returned but its outputs in {spec.output_dir} are incomplete")
                transient = is_transient(error)
                message = f"{type(error).__name__}: {error}"
                if transient and attempt <= max_retries:
                    ledger.log_event(stage, f"{spec.name}: attempt {attempt} lost ({message}); retrying")
                    time.sleep(backoff_s * 2 ** (attempt - 1))
                    pending[submit(spec)] = (spec, attempt + 1)
                    continue
                detail = "".join(traceback.format_exception(error)[-3:]) if not transient else message
                ledger.mark_failed(spec.task_id, detail, transient)
                ledger.log_event(stage, f"{spec.name}: failed ({message})")
                result.failed[spec.task_id] = message
                progress.advance(bar)
                progress.update(bar, note=f"[red]{len(result.failed)} failed")
    ratio = len(result.failed) / max(1, len(specs))
    if ratio > failure_ratio_limit:
        lines = "\n".join(f"  {task}: {error.splitlines()[0] if error else ''}"
                          for task, error in list(result.failed.items())[:10])
        raise StageFailed(f"stage '{stage}': {len(result.failed)} of {len(specs)} tasks failed "
                          f"({ratio:.0%} > limit {failure_ratio_limit:.0%}):\n{lines}")
    return result
