"""Batch scoring at scale: shards over ``torchrun`` ranks, preparation in worker processes
ahead of the model, and a manifest of every input.

Under ``torchrun`` (``WORLD_SIZE`` > 1) rank *r* of *n* scores inputs r, r + n, r + 2n, …
of the command line; every rank sees the whole list, so output-name clashes are found the
same way everywhere, and since each input belongs to one rank no two ranks write the same
file. Nothing is shared but the output folder. Within a rank, ``--workers`` processes load,
mask, register and normalise the next scans (CPU work) while the main process runs the model
and writes outputs. At the end rank 0 gathers every rank's entries (over gloo, even on GPUs:
a few kilobytes) and writes ``manifest.json``.

Example:
    >>> from pipeline.model.distributed import World
    >>> share(10, World(rank=1, size=4))
    [1, 5, 9]
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.inference.options import Status
from pipeline.io.atomic import write_json
from pipeline.io.errors import ScanError, one_line
from pipeline.preprocess.prepare import Prepared, Preprocessor
from pipeline.scoring.domain import VERDICTS

if TYPE_CHECKING:  # not at run time: preparation workers import this module, and need no torch
    from pipeline.model.distributed import World

MANIFEST = "manifest.json"
# How long a rank that has finished waits for the slowest one before the manifest is given
# up: a resumed run can leave one rank's share done and another's untouched.
GATHER_TIMEOUT = timedelta(hours=48)


@dataclass
class Job:
    """One input of this rank: where it is, its output name and what its outputs depend on."""

    scan: Path
    mask: Path | None
    name: str
    provenance: dict[str, Any] | None
    index: int = 0                    # position on the command line


@dataclass
class Entry:
    """One input's line in the manifest."""

    input: str
    status: Status
    rank: int
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    verdict: str | None = None        # normal | abnormal | out of distribution (scored)


def share(n_inputs: int, world: World) -> list[int]:
    """Indices of the inputs this rank scores (round robin: ranks finish close together)."""
    return list(range(world.rank, n_inputs, world.size))


def default_workers(n_jobs: int, world: World) -> int:
    """Preparation workers per rank: one per CPU this rank can count on, less one for the
    model; none for a single scan (starting a worker costs more than it saves)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    per_rank = max(1, (cpus or 1) // max(local_ranks, 1))
    return max(0, min(n_jobs - 1, per_rank - 1))


_WORKER: dict[str, Any] = {}
PREFETCH = 2  # scans queued per worker: one in hand, one waiting, so no worker idles
_ORPHAN_CHECK_S = 0.5  # how often a worker checks that the scoring process still lives


def _init_worker(pre: Preprocessor, parent: int) -> None:
    import threading

    _WORKER.update(pre=pre)  # the model's own preprocessor: its template, atlas and scale
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this worker once the scoring process is gone (killed, say): an orphan would hold
    its stdout and stderr open and wait forever to hand back a result."""
    import time

    while os.getppid() == parent:
        time.sleep(_ORPHAN_CHECK_S)
    os._exit(1)


@dataclass
class Failed:
    """Why a scan could not be prepared, and the traceback for ``--debug`` (exceptions cross
    the process boundary as text, never as objects that may not unpickle)."""

    reason: str
    trace: str = ""


def _prepare_safely(pre: Preprocessor, scan: Path, mask: Path | None) -> Prepared | Failed:
    """:meth:`Preprocessor.prepare_file`, with a failure returned as a :class:`Failed`."""
    import traceback

    try:
        return pre.prepare_file(scan, mask)
    except Exception as exc:
        return Failed(one_line(exc), "" if isinstance(exc, ScanError) else
                      traceback.format_exc())


def _prepare_in_worker(scan: Path, mask: Path | None) -> Prepared | Failed:
    return _prepare_safely(_WORKER["pre"], scan, mask)


def prepared_in_order(jobs: Iterable[Job], pre: Preprocessor, workers: int
                      ) -> Iterator[tuple[Job, Prepared | Failed]]:
    """Each job with its prepared scan (or why it failed), in order. With workers, up to
    ``PREFETCH × workers`` scans are prepared ahead in other processes. If the pool breaks
    (a worker killed, e.g. out of memory), the oldest scan in flight, the one most likely to
    have killed it, fails; the others go to a fresh pool."""
    if workers <= 0:
        for job in jobs:
            yield job, _prepare_safely(pre, job.scan, job.mask)
        return
    todo = iter(jobs)

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker,
                                   initargs=(pre, os.getpid()))

    pool = new_pool()

    def submit(job: Job) -> tuple[Job, Future[Prepared | Failed]]:
        try:
            return job, pool.submit(_prepare_in_worker, job.scan, job.mask)
        except BrokenProcessPool as exc:  # broke since the last check: handled in turn
            broken: Future[Prepared | Failed] = Future()
            broken.set_exception(exc)
            return job, broken

    pending = deque(submit(j) for j in itertools.islice(todo, PREFETCH * workers))
    try:
        while pending:
            job, future = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool as exc:
                result = Failed(f"the preparation worker died ({one_line(exc)})")
                pool.shutdown(wait=True, cancel_futures=True)
                pool = new_pool()
                pending = deque(submit(j) for j, _ in pending)
            following = next(todo, None)
            if following is not None:
                pending.append(submit(following))
            yield job, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def write_manifest(out: Path, entries: list[Entry], world: World, model: dict[str, Any],
                   run_key: str) -> dict[str, Any] | None:
    """Gather every rank's entries on rank 0, which writes ``manifest.json`` (inputs in
    command-line order) and returns it; every rank returns once it is written. ``run_key``
    (the model's fingerprint and the input list) must be the same on every rank: an alias
    that moved between ranks' start-ups, or nodes given different inputs, are an ``error``
    in the manifest."""
    import torch.distributed as dist

    gathered: list[tuple[str, list[Entry]]] = [(run_key, entries)]
    if world.distributed:
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=GATHER_TIMEOUT)
        parts: list[Any] | None = [None] * world.size if world.is_main else None
        dist.gather_object((run_key, entries), parts, dst=0)
        gathered = parts or []
    manifest = None
    if world.is_main:
        # round robin: rank r's k-th entry is input k·size + r
        ordered = [e for row in itertools.zip_longest(*(rows for _, rows in gathered))
                   for e in row if e is not None]
        # one spelling: each status and verdict counted under the value the entries hold
        counts = {"status": {str(s): sum(e.status == s for e in ordered) for s in Status},
                  "verdict": {v: sum(e.verdict == v for e in ordered) for v in VERDICTS}}
        keys = sorted({key for key, _ in gathered})
        manifest = {"model": model, "world_size": world.size, "counts": counts,
                    "error": None if len(keys) == 1 else
                    "the ranks did not all have the same model and inputs",
                    "inputs": [asdict(e) for e in ordered]}
        write_json(out / MANIFEST, manifest)
    if world.distributed:
        dist.barrier()  # no rank exits (and lets torchrun stop the others) before the write
        dist.destroy_process_group()
    return manifest
