"""The model card and ``training.json`` written with a run's model (``save_pretrained``)."""

from __future__ import annotations

import json
import os
import platform
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch

from .state import _json_safe


class ModelCardMixin:
    """What :class:`~upocr.training.trainer.Trainer` writes next to its model: the card's training
    section and ``training.json``. Reads the trainer's config, step, timing and validation."""

    # ------------------------------------------------------------------ model export
    def hardware_description(self) -> str:
        if self.device.type == "cuda":
            what = torch.cuda.get_device_name(self.device)
        else:
            what = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        return f"{self.world_size} x {what}" if self.world_size > 1 else what

    def model_card_details(self, note: str | None = None) -> str:
        config = self.config
        lines = ["## Training", ""]
        if note:
            lines += [f"This checkpoint: {note}.", ""]
        start = f"fine-tuned from `{config.init_from}`" if config.init_from else f"trained from scratch (preset `{config.preset}`)"
        lines += [
            f"- Trained with `upocr train`, {start}, for {self.step} of {config.steps} steps.",
            f"- Batch: {', '.join(f'{config.task_batch_size(t)} {t}' for t in self.tasks)} images per step"
            + (f" on each of {self.world_size} processes" if self.world_size > 1 else "")
            + f", {config.image_size}x{config.image_size} pixels; {self.images_seen} images seen.",
            f"- AdamW, lr {config.lr:g} (encoder x{config.lr_encoder_ratio:g}), weight decay {config.weight_decay:g}, "
            f"{config.warmup_steps} warm-up steps then linear decay to {config.min_lr:g}; gradient clipping "
            f"{config.grad_clip:g}; {'fp16 mixed precision' if self.use_amp else 'float32'}"
            + ("; VGG16 perceptual and style losses" if self.vgg is not None else "") + ".",
            f"- Hardware: {self.hardware_description()}; training time {_duration(self.elapsed)}.",
            "", "### Data", "",
        ]
        for task, specs in config.datasets.items():
            lines.append(f"- {task}: " + "; ".join(_describe_spec(s) for s in specs))
        if config.val_datasets:
            lines += ["", "Held out for validation:", ""]
            for task, specs in config.val_datasets.items():
                lines.append(f"- {task}: " + "; ".join(_describe_spec(s) for s in specs))
        if self.last_val:
            lines += ["", f"### Validation (step {self.last_val.get('step')})", "", "| task | metric | value |",
                      "|---|---|---|"]
            for task, values in self.last_val.items():
                if not isinstance(values, dict):
                    continue
                for key, value in values.items():
                    if key == "items":
                        continue
                    shown = "n/a" if value is None else (f"{value:.4g}" if isinstance(value, float) else value)
                    lines.append(f"| {task} | {key} | {shown} |")
            lines += ["", "Validation metrics come from the training loop (quick metrics on the held-out "
                          "sets above); use `upocr evaluate` for benchmark numbers."]
        return "\n".join(lines) + "\n"

    def save_model(self, directory: Path, note: str | None = None) -> None:
        """``save_pretrained`` with a model card (rank 0 only)."""
        if not self.is_main:
            return
        directory = Path(directory)
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        was_training = self.model.training
        self.model.eval()
        try:
            self.model.save_pretrained(tmp, model_card_kwargs={
                "model_details": self.model_card_details(note), "tasks": ", ".join(self.model.tasks)})
        finally:
            self.model.train(was_training)
        (tmp / "training.json").write_text(json.dumps(_json_safe({
            "step": self.step, "elapsed_s": self.elapsed, "images": self.images_seen,
            "hardware": self.hardware_description(), "validation": self.last_val, "config": self.config.to_dict(),
        }), indent=2), encoding="utf-8")
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(tmp, directory)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _describe_spec(spec: Mapping) -> str:
    spec = dict(spec)
    fmt = spec.pop("format", "?")
    spec.pop("task", None)
    extras = ", ".join(f"{k}={v}" for k, v in spec.items())
    return f"`{fmt}`" + (f" ({extras})" if extras else "")
