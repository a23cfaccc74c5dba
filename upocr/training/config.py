"""Training options (:class:`TrainConfig`) and the learning-rate schedule.

Kept free of torch so that building the command line stays fast; the trainer itself lives in
:mod:`upocr.training.trainer`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..tasks import TASKS, canonical_task, get_task

#: The resolved options of a run, written to its output folder.
CONFIG_NAME = "config.yaml"


class TrainingError(RuntimeError):
    """A training run cannot start or continue (bad configuration, existing run, missing checkpoint)."""


# =============================================================================================
# Configuration
# =============================================================================================


def _default_datasets() -> dict[str, list[dict]]:
    return {task: [{"format": "synthetic", "split": "train"}] for task in TASKS}


@dataclass
class TrainConfig:
    """Everything a training run needs. Load with :meth:`from_yaml` / :meth:`from_dict`; every
    field is also a ``upocr train`` flag (``--field-name``; lists and mappings as YAML)."""

    # --- model
    preset: str = field(default="tiny", metadata={"help": "model preset for a fresh model (tiny, small)"})
    init_from: str | None = field(default=None, metadata={
        "help": "fine-tune from a model folder, Hub repo id or official .pth instead of a fresh preset"})
    model_overrides: dict = field(default_factory=dict, metadata={
        "help": "UPOCR constructor arguments overriding the preset/loaded config, e.g. {drop_path_rate: 0.1}"})
    # --- data
    datasets: dict = field(default_factory=_default_datasets, metadata={
        "help": "training data: {task: [dataset spec, ...]} (specs of one task are concatenated)"})
    val_datasets: dict = field(default_factory=dict, metadata={
        "help": "held-out data: {task: [dataset spec, ...]}"})
    image_size: int = field(default=512, metadata={"help": "training image side (multiple of 32)"})
    val_image_size: int | None = field(default=None, metadata={
        "help": "validation image side (multiple of 32; default: image_size), e.g. whole renders when "
        "training on crops"})
    batch_size: int | dict = field(default=8, metadata={
        "help": "images per task per step and process: one number, or {task: images} to give a task more"})
    num_workers: int | dict = field(default=0, metadata={
        "help": "data loading processes per task (0: in the main process): one number, or {task: processes} to "
        "feed a task that takes longer to render or has a larger batch"})
    # --- optimisation
    steps: int = field(default=80_000, metadata={"help": "optimiser updates in total"})
    lr: float = field(default=5e-4, metadata={"help": "peak learning rate"})
    lr_encoder_ratio: float = field(default=0.1, metadata={"help": "encoder learning rate / lr"})
    min_lr: float = field(default=1e-5, metadata={"help": "learning rate at the last step"})
    warmup_steps: int = field(default=2_000, metadata={"help": "linear warm-up from 0 (updates)"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    betas: list = field(default_factory=lambda: [0.9, 0.999], metadata={"help": "AdamW betas"})
    grad_clip: float = field(default=0.1, metadata={"help": "max global gradient norm (0: no clipping)"})
    forward: str = field(default="auto", metadata={
        "help": "concat: one forward on all tasks' images; per-task: one forward/backward per task with "
        "accumulated gradients (less memory); auto: concat on CUDA, per-task on CPU (measured faster there)"})
    amp: bool = field(default=True, metadata={"help": "mixed precision on CUDA (ignored on CPU)"})
    amp_dtype: str = field(default="float16", metadata={
        "help": "autocast type on CUDA: float16 (with a loss scaler) or bfloat16 (Ampere and later; no scaler)"})
    foreground_weight: float | dict = field(default=1.0, metadata={
        "help": "weight of text pixels in the segmentation and tampering losses (1: the official plain mean); "
        "one number for both tasks or {task: weight}"})
    tampered_weight: float | None = field(default=None, metadata={
        "help": "weight of tampered-text pixels in the tampering loss (default: foreground_weight, like real text)"})
    vgg16_weights: str | None = field(default=None, metadata={
        "help": "local torchvision VGG16 weights: adds the perceptual and style terms to the removal loss"})
    cpu_budget_s: float | None = field(default=None, metadata={
        "help": "pause (checkpointed, resumable) once training has used this many seconds of the process's CPU "
        "time, all threads summed: equal budgets for comparing runs on a shared machine"})
    time_budget_s: float | None = field(default=None, metadata={
        "help": "train for this many wall-clock seconds (summed over resumes) instead of to `steps`: the "
        "learning rate decays over the budget, so a short lease on a fast machine ends with a finished model; "
        "`steps` stays an upper bound"})
    # --- run
    seed: int = field(default=0, metadata={"help": "random seed (model init, data order, drop path)"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1 (default: CUDA when available)"})
    deterministic: bool = field(default=False, metadata={"help": "deterministic CUDA kernels (slower)"})
    output_dir: str = field(default="runs/upocr", metadata={"help": "where logs, checkpoints and models go"})
    log_every: int = field(default=10, metadata={"help": "steps between log lines"})
    save_every: int = field(default=1_000, metadata={"help": "steps between checkpoints (0: only at the end)"})
    val_every: int = field(default=2_000, metadata={"help": "steps between validations (0: only at the end)"})
    val_batch_size: int | None = field(default=None, metadata={"help": "validation batch (default: batch_size)"})
    val_max_items: int | None = field(default=None, metadata={"help": "validate on at most this many items per task"})
    val_metrics: bool = field(default=True, metadata={"help": "compute PSNR / fgIoU / mIoU during validation"})
    save_best: bool = field(default=True, metadata={"help": "keep the model with the lowest validation loss in output_dir/best"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        values = {str(k).replace("-", "_"): v for k, v in dict(values or {}).items()}
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise TrainingError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**values).validated()

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "TrainConfig":
        import yaml

        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, Mapping):
            raise TrainingError(f"{path}: expected a mapping of options at the top level")
        return cls.from_dict(values)

    def replace(self, **changes) -> "TrainConfig":
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # ------------------------------------------------------------------ checks
    def validated(self) -> "TrainConfig":
        """Normalise task names and dataset specs; raise :class:`TrainingError` on bad values."""
        self.datasets = _normalise_specs(self.datasets, "datasets")
        if not self.datasets:
            raise TrainingError("no training datasets given")
        self.val_datasets = _normalise_specs(self.val_datasets or {}, "val_datasets")
        self.model_overrides = dict(self.model_overrides or {})
        self.betas = [float(b) for b in self.betas]
        if len(self.betas) != 2:
            raise TrainingError("betas needs two values")
        if self.image_size <= 0 or self.image_size % 32:
            raise TrainingError(f"image_size must be a positive multiple of 32, got {self.image_size}")
        if self.val_image_size is not None and (self.val_image_size <= 0 or self.val_image_size % 32):
            raise TrainingError(f"val_image_size must be a positive multiple of 32, got {self.val_image_size}")
        self.batch_size = _normalise_counts(self.batch_size, "batch_size", list(self.datasets), 1)
        self.num_workers = _normalise_counts(self.num_workers, "num_workers", list(self.datasets), 0)
        if int(self.steps) < 1:
            raise TrainingError("steps must be at least 1")
        for name in ("warmup_steps", "log_every", "save_every", "val_every"):
            if int(getattr(self, name)) < 0:
                raise TrainingError(f"{name} must not be negative")
        if self.lr <= 0 or self.min_lr < 0 or self.lr_encoder_ratio < 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise TrainingError("lr must be positive; min_lr, lr_encoder_ratio, weight_decay, grad_clip not negative")
        self.foreground_weight = _normalise_foreground_weight(self.foreground_weight)
        if self.tampered_weight is not None and not float(self.tampered_weight) > 0:
            raise TrainingError(f"tampered_weight must be positive, got {self.tampered_weight}")
        if self.forward not in ("auto", "concat", "per-task"):
            raise TrainingError(f"forward must be auto, concat or per-task, got {self.forward!r}")
        if int(self.seed) < 0:
            raise TrainingError("seed must not be negative")
        if self.amp_dtype not in ("float16", "bfloat16"):
            raise TrainingError(f"amp_dtype must be float16 or bfloat16, got {self.amp_dtype!r}")
        if self.time_budget_s is not None and not float(self.time_budget_s) > 0:
            raise TrainingError(f"time_budget_s must be positive, got {self.time_budget_s}")
        if self.val_batch_size is not None and self.val_batch_size < 1:
            raise TrainingError("val_batch_size must be at least 1")
        return self

    @property
    def tasks(self) -> list[str]:
        return list(self.datasets)

    @property
    def val_size(self) -> int:
        """Side of the validation images (``val_image_size``, else ``image_size``)."""
        return self.val_image_size or self.image_size

    def task_batch_size(self, task: str) -> int:
        """Images of ``task`` per step and process."""
        return _for_task(self.batch_size, task)

    def task_num_workers(self, task: str) -> int:
        """Data loading processes of ``task`` per process."""
        return _for_task(self.num_workers, task)

    def loss_options(self, task: str) -> dict:
        """Extra keyword arguments of ``task``'s loss (see :func:`upocr.training.losses.task_loss`)."""
        task = canonical_task(task)
        weights = self.foreground_weight
        weight = weights.get(task, 1.0) if isinstance(weights, dict) else weights
        # image targets (text removal) have their own text weighting in the masked L1
        options = {} if get_task(task).target_is_image or weight == 1.0 else {"foreground_weight": float(weight)}
        if self.tampered_weight is not None and get_task(task).forges_text:
            options["tampered_weight"] = float(self.tampered_weight)
        return options


def _per_task(value, name: str, check) -> Any:
    """``check(value, name)`` for one value for every task, or ``{task: check(v, name[task])}``
    (task names canonical, in the canonical task order) for a mapping."""
    if not isinstance(value, Mapping):
        return check(value, name)
    out = {}
    for key, item in value.items():
        try:
            task = canonical_task(key)
        except ValueError as error:
            raise TrainingError(f"{name}: {error}") from None
        out[task] = check(item, f"{name}[{task}]")
    return {t: out[t] for t in TASKS if t in out}


def _for_task(count: int | dict, task: str) -> int:
    """``task``'s value of a count given for every task or per task (see :func:`_normalise_counts`)."""
    return count[canonical_task(task)] if isinstance(count, dict) else int(count)


def _normalise_counts(value, name: str, tasks: list[str], least: int) -> int | dict:
    """A whole number of at least ``least`` (``batch_size``, ``num_workers``), one for all tasks
    or one per training task."""
    def check(count, where: str) -> int:
        if isinstance(count, bool) or not isinstance(count, int) or count < least:
            raise TrainingError(f"{where} must be a whole number of at least {least}, got {count!r}")
        return count

    counts = _per_task(value, name, check)
    if isinstance(counts, dict):
        missing = [t for t in tasks if t not in counts]
        if missing:
            raise TrainingError(f"{name}: no value for {', '.join(missing)}")
    return counts


def _normalise_foreground_weight(value) -> float | dict:
    def check(weight, where: str) -> float:
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise TrainingError(f"{where} must be a number, got {weight!r}") from None
        if not weight > 0:
            raise TrainingError(f"{where} must be positive, got {weight}")
        return weight

    weights = _per_task(value, "foreground_weight", check)
    image_targets = [t for t in weights if get_task(t).target_is_image] if isinstance(weights, dict) else []
    if image_targets:
        raise TrainingError(f"foreground_weight: {image_targets[0].replace('-', ' ')} weighs text pixels with its own "
                            "(text, non-text) scale weights")
    return weights


def _normalise_specs(specs: Mapping | None, what: str) -> dict[str, list[dict]]:
    if specs is None:
        return {}
    if not isinstance(specs, Mapping):
        raise TrainingError(f"{what} must map task names to dataset specs")
    out: dict[str, list[dict]] = {}
    for key, value in specs.items():
        try:
            task = canonical_task(key)
        except ValueError as error:
            raise TrainingError(f"{what}: {error}") from None
        items = [value] if isinstance(value, Mapping) else list(value or [])
        normalised = []
        for spec in items:
            if not isinstance(spec, Mapping) or "format" not in spec:
                raise TrainingError(f"{what}[{task}]: each dataset spec needs a 'format', got {spec!r}")
            spec = dict(spec)
            if "task" in spec and canonical_task(spec["task"]) != task:
                raise TrainingError(f"{what}[{task}]: spec names task {spec['task']!r}")
            spec["task"] = task
            normalised.append(spec)
        if normalised:
            out.setdefault(task, []).extend(normalised)
    # Keep the canonical task order so that the concatenated batch is laid out the same way.
    return {t: out[t] for t in TASKS if t in out}


# =============================================================================================
# Schedule
# =============================================================================================


def lr_factor(step: int, steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate for optimiser update ``step`` (counted from 1;
    ``step = 0`` is the start of warm-up and gives 0)."""
    if warmup_steps > 0 and step < warmup_steps:
        return max(step, 0) / warmup_steps
    span = steps - warmup_steps
    if span <= 0:
        return 1.0
    done = min(max(step - warmup_steps, 0), span) / span
    return 1.0 + (min_ratio - 1.0) * done


def budget_lr_factor(step: int, fraction: float, warmup_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate for update ``step`` of a run that has used ``fraction``
    of its time budget: the linear warm-up over steps, then a linear decay over the budget."""
    warm = min(max(step, 0) / warmup_steps, 1.0) if warmup_steps > 0 else 1.0
    return warm * (1.0 + (min_ratio - 1.0) * min(max(fraction, 0.0), 1.0))


def learning_rate(step: int, config: TrainConfig, encoder: bool = False) -> float:
    """Learning rate of optimiser update ``step`` (1-based) under ``config``."""
    peak = config.lr * (config.lr_encoder_ratio if encoder else 1.0)
    return peak * lr_factor(step, config.steps, config.warmup_steps, config.min_lr / config.lr)


__all__ = ["CONFIG_NAME", "TrainConfig", "TrainingError", "budget_lr_factor", "learning_rate", "lr_factor"]
