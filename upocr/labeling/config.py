"""How to label (:class:`LabelConfig`) and what a run did (:class:`LabelSummary`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..tasks import DEFAULT_SEGMENTATION_THRESHOLD, canonical_task
from .exports import check_formats
from .instances import INSTANCE_RULES


@dataclass
class LabelConfig:
    """How to label.

    ``mode`` (``resize``/``tile``/``auto``; ``None``: the pipeline's), ``threshold`` (text
    segmentation and the text mask of text removal), ``overwrite_unreviewed`` (label again files
    that a model already labelled; reviewed labels are kept regardless), ``max_pixels`` (reading
    limit; ``None``: the pipeline's), ``read_workers``/``write_workers`` (thread pools),
    ``prefetch``/``pending_writes`` (bounds of the queues), ``overlap=False`` (everything in turn
    on the calling thread: the baseline), ``progress`` (a tqdm bar on stderr), ``instances``
    (how the COCO and LabelMe exports group pixels: ``words`` or ``lines``).
    """

    task: str
    formats: tuple[str, ...] = ("png", "coco")
    threshold: float = DEFAULT_SEGMENTATION_THRESHOLD
    mode: str | None = None
    overwrite_unreviewed: bool = False
    max_pixels: int | None = None
    read_workers: int = 2
    write_workers: int = 2
    prefetch: int = 4
    pending_writes: int = 4
    overlap: bool = True
    progress: bool = True
    revision: str | None = None
    progress_desc: str | None = None
    instances: str = "words"
    #: Label Studio image URLs: ``{"document_root": DIR}`` or ``{"url_prefix": URL}`` (see
    #: :mod:`upocr.labeling.labelstudio`; default: local files under the input folder's parent).
    labelstudio: dict | None = None

    def __post_init__(self) -> None:
        self.task = canonical_task(self.task)
        self.formats = check_formats(self.formats, "format") or ("png",)
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"the threshold must lie in [0, 1], got {self.threshold}")
        self.threshold = float(self.threshold)
        if self.instances not in INSTANCE_RULES:
            raise ValueError(f"instances must be one of {', '.join(INSTANCE_RULES)}, got {self.instances!r}")
        if self.mode is not None and self.mode not in ("resize", "tile", "auto"):
            raise ValueError(f"mode must be resize, tile or auto, got {self.mode!r}")
        for name in ("read_workers", "write_workers", "prefetch", "pending_writes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1")


@dataclass
class LabelSummary:
    """What a run did. ``done``: labelled now; ``failed``; ``skipped`` (e.g. two sources that
    would share a label file); ``kept_reviewed``: reviewed labels left alone; ``already_done``:
    finished in an earlier run and not redone; ``other_settings``: of those, how many were made
    with another model or threshold. ``seconds`` covers reading, inference and writing (not model
    loading or exports)."""

    task: str
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    kept_reviewed: int = 0
    already_done: int = 0
    other_settings: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    skips: list[tuple[str, str]] = field(default_factory=list)
    #: What the exports wrote (``{"coco": path, "labelme": count}``), after :func:`label_folder`.
    exports: dict[str, Any] = field(default_factory=dict)
    #: ``(file, reason)`` of labels whose export files could not be written (the label is kept).
    export_failures: list[tuple[str, str]] = field(default_factory=list)

    COUNTS = ("total", "done", "failed", "skipped", "kept_reviewed", "already_done", "other_settings")

    @property
    def ok(self) -> bool:
        """No file failed and every export was written (the exit status is 0)."""
        return not self.failed and not self.export_failures

    @property
    def processed(self) -> int:
        """Files that went through the model in this run (labelled or failed)."""
        return self.done + self.failed

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"task": self.task}
        out.update({name: getattr(self, name) for name in self.COUNTS})
        out["seconds"] = round(self.seconds, 4)
        out["images_per_second"] = round(self.images_per_second, 4)
        out["failures"] = [{"file": f, "reason": r} for f, r in self.failures]
        out["export_failures"] = [{"file": f, "reason": r} for f, r in self.export_failures]
        return out

    def text(self) -> str:
        """The human summary printed at the end of a run."""
        lines = [
            f"upocr label: {self.task}: {self.total} files, {self.processed} processed in "
            f"{self.seconds:.1f} s ({self.images_per_second:.2f} images/s)",
            f"  done {self.done} | failed {self.failed} | skipped {self.skipped} | "
            f"reviewed kept {self.kept_reviewed} | already done {self.already_done}",
        ]
        if self.export_failures:
            lines.append(f"  exports: {len(self.export_failures)} label(s) could not be exported (listed above)")
        if self.other_settings:
            lines.append(
                f"  note: {self.other_settings} of the already done labels were made with another model or "
                "threshold; pass --overwrite-unreviewed to label them again"
            )
        return "\n".join(lines)
