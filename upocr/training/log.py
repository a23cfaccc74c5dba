"""The run's log: JSON lines in ``output_dir/log.jsonl`` and the progress bar's summary."""

from __future__ import annotations

import json
from collections.abc import Mapping

from ..tasks import get_task
from ..io import atomic_write_text
from .state import _json_safe, _round

LOG_NAME = "log.jsonl"


class RunLogMixin:
    """Logging for :class:`~upocr.training.trainer.Trainer` (rank 0 writes)."""

    def _log(self, record: Mapping) -> None:
        if not self.is_main:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output_dir / LOG_NAME, "a", encoding="utf-8") as f:
            f.write(json.dumps(_json_safe(record)) + "\n")

    def _trim_log(self) -> None:
        """On resume, drop log records of steps after the checkpoint (they will be redone)."""
        path = self.output_dir / LOG_NAME
        if not self.is_main or not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("event") in ("train", "val") and int(record.get("step", 0)) > self.step:
                continue
            kept.append(line)
        atomic_write_text(path, "".join(k + "\n" for k in kept))

    def _accumulate(self, window: dict, stats: Mapping) -> None:
        window["count"] += 1
        window["loss"] += stats["loss"]
        window["grad_norm"] += stats["grad_norm"]
        for task, parts in stats["tasks"].items():
            acc = window["tasks"].setdefault(task, {})
            for key, value in parts.items():
                acc[key] = acc.get(key, 0.0) + value

    def _flush(self, window: dict, lr: float, images_per_step: int) -> dict:
        n = max(window["count"], 1)
        seconds = window["seconds"]
        record = {
            "event": "train", "step": self.step, "lr": lr,
            "loss": float(window["loss"]) / n,
            "losses": {t: {k: float(v) / n for k, v in parts.items()} for t, parts in window["tasks"].items()},
            "grad_norm": float(window["grad_norm"]) / n,
            "time": self.elapsed,
            "images_per_s": images_per_step * n / seconds if seconds > 0 else None,
        }
        self._log(_round(record))
        window.update(count=0, loss=0.0, tasks={}, grad_norm=0.0, seconds=0.0)
        return record

    @staticmethod
    def _postfix(record: Mapping) -> str:
        items = [f"loss={record['loss']:.4f}"]
        items += [f"{get_task(t).short_name}={p['loss']:.4f}" for t, p in record["losses"].items()]
        items.append(f"lr={record['lr']:.2e}")
        if record.get("images_per_s"):
            items.append(f"{record['images_per_s']:.1f} img/s")
        return " ".join(items)
