"""Validation during training: the loss and each task's quick metric on the held-out sets,
computed through the task layer (:meth:`upocr.tasks.base.Task.prediction` and its metrics)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..tasks import DEFAULT_SEGMENTATION_THRESHOLD, TASKS, get_task
from .sampling import Collate, PositionedDataset
from .state import _round


class ValidationMixin:
    """Held-out evaluation for :class:`~upocr.training.trainer.Trainer` (rank 0 computes)."""

    @torch.no_grad()
    def validate(self) -> dict:
        """Loss and quick metrics per held-out task (rank 0 computes; the others wait)."""
        results: dict[str, dict] = {}
        if self.is_main and self.val_sets:
            model = self.model
            was_training = model.training
            model.eval()
            try:
                for task, dataset in self.val_sets.items():
                    results[task] = self._validate_task(model, task, dataset)
            finally:
                model.train(was_training)
            results["loss"] = float(sum(r["loss"] for r in results.values() if isinstance(r, dict)))
        self._barrier()
        return results

    def _validate_task(self, model: nn.Module, task: str, dataset) -> dict:
        from .losses import task_loss

        config = self.config
        count = len(dataset) if config.val_max_items is None else min(len(dataset), config.val_max_items)
        bs = config.val_batch_size or config.task_batch_size(task)
        collate = Collate(config.val_size)
        wrapped = PositionedDataset(dataset, config.seed + 1, TASKS.index(task))
        spec = get_task(task)
        metrics = spec.metrics() if config.val_metrics else None
        loss_sum = 0.0
        for start in range(0, count, bs):
            batch = collate([wrapped[(i, i)] for i in range(start, min(start + bs, count))])
            images = batch["image"].to(self.device)
            with self._autocast():
                outputs = model(images, task)
                outs = [o.float() for o in outputs]
                on_device = {"image": images, "target": batch["target"].to(self.device),
                             "mask": batch["mask"].to(self.device)}
                loss, _ = task_loss(task, outs, on_device, vgg=self._vgg_for(task),
                                    **config.loss_options(task))
            loss_sum += float(loss) * images.shape[0]
            if metrics is None:
                continue
            for pred, target in zip(outs[-1].clamp(0, 1).cpu().numpy(), batch["target"].numpy()):
                truth = spec.ground_truth(np.moveaxis(target, 0, -1))
                spec.score(metrics, spec.prediction(pred, DEFAULT_SEGMENTATION_THRESHOLD), truth, None)
        out: dict[str, Any] = {"loss": loss_sum / max(count, 1), "items": count}
        if metrics is not None and count:
            out[spec.validation_metric] = metrics.compute()[spec.validation_metric]
        return out

    def _vgg_for(self, task: str):
        """The VGG16 features for the perceptual terms: image targets only (text removal)."""
        return self.vgg if get_task(task).target_is_image else None

    def _run_validation(self, bar=None) -> None:
        results = self.validate()
        if not self.is_main:
            return
        self.last_val = {"step": self.step, **results}
        self._log({"event": "val", "step": self.step, "val": _round(results)})
        text = f"step {self.step} validation: " + "; ".join(
            f"{t} " + ", ".join(f"{k}={v:.4g}" for k, v in r.items() if isinstance(v, float))
            for t, r in results.items() if isinstance(r, dict))
        (bar.write if bar is not None else print)(text)
        if self.config.save_best and results.get("loss") is not None:
            if self.best_val is None or results["loss"] < self.best_val:
                self.best_val = float(results["loss"])
                self.save_model(self.output_dir / "best", note=f"lowest validation loss, step {self.step}")
