"""Batch pre-labelling: run one task over a folder of images and keep the labels safely.

This is the library behind ``upocr label`` (:mod:`upocr.cli.label`). Labels are kept by
:class:`upocr.labeling.LabelStore` (``masks/``, ``cleaned/``, ``manifest*.jsonl``); exports
(``coco.json``, ``labelme/``) are rebuilt at the end from every finished label.

Guarantees
----------
* Every file written is written atomically and every manifest record is one fsynced line, so a
  run killed at any moment (even ``kill -9``) leaves no half-written label. Temporary files of
  an interrupted write are removed when the next run starts (:func:`clean_stale_temp_files`).
* A new run skips every file whose label is finished (status ``done`` or ``reviewed`` with its
  files on disk); failed files are tried again. A reviewed label is never replaced.
* One bad file never stops a run: it is recorded as ``failed`` with the reason.
* Label files do not depend on the order of work, the number of threads or processes.

Throughput
----------
With ``overlap=True`` (the default) reading, inference and writing overlap::

    reader threads --(bounded, in file order)--> main thread: model --(bounded)--> writer threads

Readers decode images ahead of the model (at most ``prefetch`` decoded images wait), the main
thread runs the network, writers turn the outputs into label arrays, encode the PNG files and
append the manifest records (at most ``pending_writes`` results wait). Memory therefore stays
bounded whatever the size of the folder.

Several processes
-----------------
:func:`shard` gives process ``rank`` of ``world_size`` the files whose index (in the sorted
list every process builds the same way) is ``rank`` modulo ``world_size``. Each process writes
its own ``manifest.rank<R>.jsonl``; :class:`ProcessGroup` provides the barriers (gloo) after which
process 0 merges the manifests and writes the exports.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..io import ImageReadError, read_image
from ..paths import iter_image_files
from ..tasks import Proposal, get_task
from .exports import LABELME_DIR, write_exports
from .config import LabelConfig, LabelSummary
from .processes import ProcessGroup
from .store import (
    CLEANED_DIR,
    DONE,
    MASKS_DIR,
    REVIEWED,
    SKIPPED,
    LabelCollisionError,
    LabelRunBusyError,
    LabelStore,
    ReviewedLabelError,
    find_label_collisions,
    labelling_run,
    label_relpath,
    merge_manifests,
)

__all__ = [
    "LabelConfig",
    "LabelSummary",
    "find_inputs",
    "shard",
    "clean_stale_temp_files",
    "label_files",
    "label_images",
    "label_folder",
    "ProcessGroup",
    "finish_output",
]



# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def find_inputs(input_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """``(path, relative name)`` of every image under ``input_dir`` (recursively, sorted), leaving
    out ``output_dir`` when it lies inside. A file given as ``input_dir`` is the only item."""
    root = Path(input_dir)
    if not os.path.lexists(root):
        raise FileNotFoundError(f"{root}: not found (no such file or folder)")
    if not root.is_dir():  # a file, or a link that the reader will report on
        return [(root, root.name)]
    exclude = [output_dir] if output_dir is not None else []
    return [(path, path.relative_to(root).as_posix()) for path in iter_image_files(root, exclude=exclude)]


def shard(items: Sequence[Any], rank: int, world_size: int) -> list[Any]:
    """The items of process ``rank``: those whose index is ``rank`` modulo ``world_size``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size}")
    return list(items[rank::world_size])


def _is_temp_name(name: str) -> bool:
    # upocr.io.atomic_writer names its temporary files ".<target name>.<random>.tmp"
    return name.startswith(".") and name.endswith(".tmp")


def clean_stale_temp_files(output_dir: str | os.PathLike) -> int:
    """Remove temporary files an interrupted atomic write left in an output folder (its top level,
    ``masks/``, ``cleaned/`` and ``labelme/``). Call it only while nothing writes to the folder.
    Returns how many were removed."""
    root = Path(output_dir)
    removed = 0
    candidates: list[Path] = []
    if root.is_dir():
        candidates.extend(p for p in root.iterdir() if p.is_file() and _is_temp_name(p.name))
    for sub in (MASKS_DIR, CLEANED_DIR, LABELME_DIR):
        folder = root / sub
        if not folder.is_dir():
            continue
        for dirpath, _, filenames in os.walk(folder):
            candidates.extend(Path(dirpath) / n for n in filenames if _is_temp_name(n))
    for path in candidates:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    todo: list[tuple[Path, str]]
    skips: list[tuple[str, str]]
    kept_reviewed: int
    already_done: int
    other_settings: int


def _collision_skips(items: Sequence[tuple[Path, str]], records: dict[str, dict]) -> dict[str, str]:
    """``{relative name: reason}`` of the sources that must not be labelled because another one
    owns the same label file. The owner is the one already labelled, else the first by name."""
    skips: dict[str, str] = {}
    for key, files in find_label_collisions(rel for _, rel in items).items():
        labelled = [f for f in files if records.get(f, {}).get("status") in (DONE, REVIEWED)]
        owner = labelled[0] if labelled else files[0]
        for other in files:
            if other != owner:
                skips[other] = f"{other} and {owner} would both be labelled as {key}; rename one of them"
    return skips


def _usable_names(items: Sequence[tuple[Path, str]]) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """The items whose relative name can name a label file, and ``(path, reason)`` of the others
    (control characters, absolute or escaping paths): those are reported, never written."""
    usable, unusable = [], []
    for path, rel in items:
        try:
            label_relpath(rel)
        except ValueError as error:
            unusable.append((path, f"cannot name a label file after it ({error})"))
        else:
            usable.append((path, rel))
    return usable, unusable


def _plan(items: Sequence[tuple[Path, str]], mine: Sequence[tuple[Path, str]], store: LabelStore,
          config: LabelConfig, model: str | None) -> _Plan:
    records = store.records()
    collisions = _collision_skips(items, records)
    todo: list[tuple[Path, str]] = []
    skips: list[tuple[str, str]] = []
    kept = already = other = 0
    for path, rel in mine:
        key = LabelStore.key(rel)
        record = records.get(key)
        status = record.get("status") if record else None
        if status == REVIEWED:
            kept += 1
            continue
        if key in collisions:
            skips.append((key, collisions[key]))
            continue
        if status == DONE and not config.overwrite_unreviewed and store.files_exist(key):
            already += 1
            if (record.get("model", model) != model or record.get("revision", config.revision) != config.revision
                    or (get_task(config.task).uses_threshold
                        and record.get("threshold", config.threshold) != config.threshold)):
                other += 1
            continue
        todo.append((path, key))
    return _Plan(todo, skips, kept, already, other)


# --------------------------------------------------------------------------------------------
# Labelling
# --------------------------------------------------------------------------------------------


class _Tally:
    """Counters shared by the threads of a run (and the progress bar)."""

    def __init__(self, summary: LabelSummary, bar: Any | None):
        self.summary = summary
        self.bar = bar
        self.lock = threading.Lock()

    def add(self, what: str, rel: str | None = None, reason: str | None = None) -> None:
        with self.lock:
            setattr(self.summary, what, getattr(self.summary, what) + 1)
            if what == "failed":
                self.summary.failures.append((rel or "", reason or ""))
            elif what == "skipped" and rel is not None:
                self.summary.skips.append((rel, reason or ""))
            if self.bar is not None and what in ("done", "failed", "kept_reviewed", "skipped"):
                self.bar.update(1)


def _needed_tasks(pipe: Any, task: str) -> list[str]:
    """The tasks to run for labelling ``task`` (those of them the model serves; one encoder pass)."""
    return [t for t in get_task(task).labelled_from if t == task or t in pipe.tasks]


def _reason(error: BaseException) -> str:
    if isinstance(error, ImageReadError):
        return error.problem
    text = str(error).strip() or type(error).__name__
    return f"{type(error).__name__}: {text}"


class _Labeller:
    """One run over a list of files: read, infer, write.

    ``predict(rgb)`` runs the model (on the calling thread); ``to_label(output)`` turns its
    output into a :class:`~upocr.tasks.Proposal` (or a ``(label, cleaned)`` pair) on a writer
    thread.
    """

    def __init__(self, predict: Callable[[np.ndarray], Any], to_label: Callable[[Any], tuple], read_kwargs: dict,
                 store: LabelStore, config: LabelConfig, tally: _Tally, extra: dict):
        self.predict = predict
        self.to_label = to_label
        self.store = store
        self.config = config
        self.tally = tally
        self.extra = extra
        self.read_kwargs = dict(read_kwargs)
        if config.max_pixels is not None:
            self.read_kwargs["max_pixels"] = config.max_pixels

    # -- the three stages ------------------------------------------------------------------------
    def read(self, path: Path) -> np.ndarray:
        return read_image(path, **self.read_kwargs)

    def infer(self, rgb: np.ndarray) -> Any:
        return self.predict(rgb)

    def write(self, rel: str, rgb_shape: tuple[int, ...], output: Any) -> None:
        try:
            proposal = self.to_label(output)
            if not isinstance(proposal, Proposal):
                proposal = Proposal(*proposal)
            record = dict(self.extra, width=int(rgb_shape[1]), height=int(rgb_shape[0]))
            confidence = proposal.confidence()
            if confidence is not None:
                record["confidence"] = round(confidence, 4)
            self.store.write_label(rel, proposal.label, cleaned=proposal.cleaned, scores=proposal.scores,
                                   record=record)
        except ReviewedLabelError:
            self.tally.add("kept_reviewed")  # reviewed by a person while this run was going
            return
        except LabelCollisionError as error:
            self.skip(rel, str(error))
            return
        except Exception as error:  # a write problem of this file (e.g. an odd label); go on
            self.fail(rel, error)
            return
        self.tally.add("done")

    # -- outcomes --------------------------------------------------------------------------------
    def fail(self, rel: str, error: BaseException | str) -> None:
        reason = error if isinstance(error, str) else _reason(error)
        try:
            self.store.mark_failed(rel, reason, record=self.extra)
        except ReviewedLabelError:
            self.tally.add("kept_reviewed")
            return
        self.tally.add("failed", rel, reason)

    def skip(self, rel: str, reason: str) -> None:
        current = self.store.record(rel)
        try:
            if not (current and current.get("status") == SKIPPED and current.get("reason") == reason):
                self.store.mark_skipped(rel, reason, record=self.extra)
        except ReviewedLabelError:
            self.tally.add("kept_reviewed")
            return
        self.tally.add("skipped", rel, reason)

    def process_read(self, rel: str, read: Callable[[], np.ndarray]) -> tuple[np.ndarray, dict] | None:
        """Read and infer one file; a failure is recorded and gives ``None``."""
        try:
            rgb = read()
        except ImageReadError as error:
            self.fail(rel, error)
            return None
        except Exception as error:  # an unexpected decoder problem is still this file's problem
            self.fail(rel, error)
            return None
        try:
            return rgb, self.infer(rgb)
        except Exception as error:
            _free_accelerator_memory(error)
            self.fail(rel, f"inference failed: {_reason(error)}")
            return None

    # -- drivers ---------------------------------------------------------------------------------
    def run_sequential(self, todo: Sequence[tuple[Path, str]]) -> None:
        for path, rel in todo:
            out = self.process_read(rel, lambda p=path: self.read(p))
            if out is not None:
                self.write(rel, out[0].shape, out[1])

    def run_overlapped(self, todo: Sequence[tuple[Path, str]]) -> None:
        config = self.config
        readers = cf.ThreadPoolExecutor(config.read_workers, thread_name_prefix="upocr-read")
        writers = cf.ThreadPoolExecutor(config.write_workers, thread_name_prefix="upocr-write")
        reads: collections.deque = collections.deque()
        writes: collections.deque = collections.deque()
        items = iter(todo)
        try:
            def top_up() -> None:
                while len(reads) < config.prefetch:
                    nxt = next(items, None)
                    if nxt is None:
                        return
                    reads.append((nxt[1], readers.submit(self.read, nxt[0])))

            top_up()
            while reads:
                rel, future = reads.popleft()
                top_up()  # keep the readers busy while the model runs
                out = self.process_read(rel, future.result)
                if out is None:
                    continue
                while len(writes) >= config.pending_writes:
                    writes.popleft().result()  # bounded: wait for the oldest write
                writes.append(writers.submit(self.write, rel, out[0].shape, out[1]))
                del out
            while writes:
                writes.popleft().result()
        finally:
            for _, future in reads:
                future.cancel()
            readers.shutdown(wait=True, cancel_futures=True)
            writers.shutdown(wait=True)  # finished results are still written on an interrupt


def _free_accelerator_memory(error: BaseException) -> None:
    if "out of memory" not in str(error).lower():
        return
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort
        pass


def _progress_bar(total: int, config: LabelConfig):
    if not config.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=config.progress_desc or f"upocr label {config.task}", unit="img",
                dynamic_ncols=True, smoothing=0.1, file=sys.stderr)


def label_files(pipe: Any, items: Sequence[tuple[Path, str]], output_dir: str | os.PathLike, config: LabelConfig,
                *, rank: int | None = None, world_size: int = 1) -> LabelSummary:
    """Label this process's share of ``items`` (``(path, relative name)``, the whole sorted list)
    into ``output_dir`` with a :class:`~upocr.pipeline.UPOCRPipeline` and return what was done.
    Exports are not written (see :func:`write_exports`). ``rank``/``world_size``: the process's
    place in a multi-process run."""
    model = getattr(pipe, "source", None)
    if config.task not in pipe.tasks:
        raise ValueError(f"this model has no {config.task} output; it serves {', '.join(pipe.tasks)}")
    store = LabelStore(output_dir, config.task, rank=rank if world_size > 1 else None, model=model,
                       revision=config.revision)
    tasks = _needed_tasks(pipe, config.task)

    def predict(rgb: np.ndarray) -> dict[str, Any]:
        return pipe.run_all(rgb, tasks, mode=config.mode, threshold=config.threshold)

    return label_images(predict, items, store, config, to_label=get_task(config.task).propose,
                        read_kwargs=getattr(pipe, "read_kwargs", None), mode=config.mode or getattr(pipe, "mode", None),
                        rank=rank, world_size=world_size)


def label_images(predict: Callable[[np.ndarray], Any], items: Sequence[tuple[Path, str]], store: LabelStore,
                 config: LabelConfig, *, to_label: Callable[[Any], tuple] | None = None,
                 read_kwargs: dict | None = None, mode: str | None = None, rank: int | None = None,
                 world_size: int = 1) -> LabelSummary:
    """The labelling engine behind ``upocr label`` and the app's Annotate tab: label this
    process's share of ``items`` into ``store``.

    ``predict(rgb)`` runs the model on one image; ``to_label(output)`` (default: the output as
    it is) gives a :class:`~upocr.tasks.Proposal` (or ``(label, cleaned)``); its confidence goes
    into the record and its scores next to the label. Reviewed labels are kept, finished ones are skipped unless
    ``config.overwrite_unreviewed``, two sources that would share a label file are skipped, and
    one bad file is recorded as failed while the run goes on.
    """
    items, unusable = _usable_names(items)
    mine = shard(items, rank or 0, world_size)
    plan = _plan(items, mine, store, config, store.model)
    summary = LabelSummary(task=config.task, total=len(mine), kept_reviewed=plan.kept_reviewed,
                           already_done=plan.already_done, other_settings=plan.other_settings)
    for path, reason in shard(unusable, rank or 0, world_size):  # no label file can be named after these
        summary.total += 1
        summary.failed += 1
        summary.failures.append((repr(str(path)), reason))
    extra: dict[str, Any] = {"revision": config.revision, "mode": mode}
    if get_task(config.task).uses_threshold:
        extra["threshold"] = config.threshold
    if world_size > 1:
        extra["rank"] = rank
    bar = _progress_bar(len(plan.todo) + len(plan.skips), config)
    tally = _Tally(summary, bar)
    labeller = _Labeller(predict, to_label or (lambda output: output), read_kwargs or {}, store, config, tally, extra)
    start = time.perf_counter()
    try:
        for rel, reason in plan.skips:
            labeller.skip(rel, reason)
        if config.overlap:
            labeller.run_overlapped(plan.todo)
        else:
            labeller.run_sequential(plan.todo)
    finally:
        summary.seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
    return summary


def finish_output(output_dir: str | os.PathLike, task: str, formats: Iterable[str],
                  input_dir: str | os.PathLike | None = None, *, rule: str = "words",
                  labelstudio: dict | None = None) -> dict[str, Any]:
    """After every process of a run has finished: fold any per-process manifests into
    ``manifest.jsonl`` and write the exports."""
    root = Path(output_dir)
    if any(root.glob("manifest.rank*.jsonl")):
        merge_manifests(root)
    return write_exports(root, task, formats, input_dir, rule=rule, labelstudio=labelstudio)


def label_folder(pipe: Any, input_dir: str | os.PathLike, output_dir: str | os.PathLike, config: LabelConfig, *,
                 items: Sequence[tuple[Path, str]] | None = None, group: "ProcessGroup | None" = None,
                 report: Callable[[str], None] | None = None) -> LabelSummary:
    """The whole of ``upocr label`` without the command line: label every image under
    ``input_dir`` into ``output_dir`` (this process's share when ``group`` is distributed), then,
    on the main process, merge the manifests and write the exports.

    ``report`` receives one line per leftover clean-up, skipped and failed file. Returns the
    summary of the whole run (every process), with the exports written (main process only).
    A second run on the same output folder stops with :class:`LabelRunBusyError` (every
    process of it), while the first goes on.
    """
    group = group or ProcessGroup({})
    items = find_inputs(input_dir, output_dir) if items is None else items
    report = report or (lambda line: print(line, file=sys.stderr))
    group.join()
    with contextlib.ExitStack() as held:
        busy: LabelRunBusyError | None = None
        if group.is_main:  # the main process holds the folder's run lock for the whole run
            try:
                held.enter_context(labelling_run(output_dir))
            except LabelRunBusyError as error:
                busy = error
        if not group.all_true(busy is None):
            group.leave()
            raise busy or LabelRunBusyError(f"{output_dir}: another labelling run is writing to this folder")
        return _label_folder_locked(pipe, input_dir, output_dir, config, items, group, report)


def _label_folder_locked(pipe: Any, input_dir: str | os.PathLike, output_dir: str | os.PathLike, config: LabelConfig,
                         items: Sequence[tuple[Path, str]], group: ProcessGroup,
                         report: Callable[[str], None]) -> LabelSummary:
    try:
        if group.is_main:
            removed = clean_stale_temp_files(output_dir)
            if removed:
                report(f"removed {removed} temporary file(s) left by an interrupted run")
        group.barrier()  # nobody writes before the leftovers are gone
        summary = label_files(pipe, items, output_dir, config, rank=group.rank, world_size=group.world_size)
        for rel, reason in summary.skips:
            report(f"skipped: {rel}: {reason}")
        for rel, reason in summary.failures:
            report(f"failed: {rel}: {reason}")
        group.barrier()  # every process has finished its files
        total = group.gather_summary(summary)
        if group.is_main:
            source = Path(input_dir)
            total.exports = finish_output(output_dir, config.task, config.formats, source if source.is_dir() else None,
                                          rule=config.instances, labelstudio=config.labelstudio)
            for rel, reason in total.exports.get("failed", []):
                report(f"failed: {rel}: {reason}")
                total.export_failures.append((rel, reason))
        group.barrier()  # the processes end together, once the manifest is merged and the exports written
    finally:
        group.leave()
    return total
