"""Joint multi-task training of UPOCR.

Every optimiser step draws one batch per task (``batch_size`` images each, per process), each
image with its own task prompt, and minimises the sum of the per-task losses (weight 1 each) from
:func:`upocr.training.losses.task_loss`. ``forward="concat"`` runs the network once on the
concatenated batch (the default on CUDA); ``forward="per-task"`` runs one forward/backward per
task and accumulates the gradients (the default on CPU, where it measured faster and needs about a
third of the activation memory). Both give the same gradient up to float rounding.

* Optimiser: AdamW with four parameter groups: encoder / rest (the encoder's learning rate is
  ``lr * lr_encoder_ratio``) x decay / no decay. Weight decay is not applied to 1-D parameters
  (norm weights, biases, q/v biases), SwinV2 ``logit_scale``, the continuous position bias MLP
  (``cpb_mlp``) or the task prompts.
* Schedule (:func:`learning_rate`): optimiser update ``s`` (counted from 1) uses
  ``lr * s / warmup_steps`` during warm-up, then decays linearly to ``min_lr`` at update
  ``steps``. Both parameter groups follow the same factor, so the encoder ends at
  ``min_lr * lr_encoder_ratio``.
* Precision: fp16 autocast with a gradient scaler on CUDA when ``amp`` is set; float32 on CPU.
  Gradients are clipped to a global norm of ``grad_clip`` (after unscaling).
* Data: each task has an infinite, deterministic stream of item positions. Epoch ``e`` of a
  task is a permutation of its (concatenated) datasets drawn from ``(seed, task, e)``; every item
  is loaded with the Python, NumPy and torch random generators seeded from ``(seed, task,
  position)`` (and restored afterwards), so random augmentations are reproducible whatever the
  number of workers. With ``N`` processes, global positions ``[p, p + N * batch_size)`` are split
  into ``N`` consecutive shards. A checkpoint stores the number of positions consumed per task.
* Checkpoints (``output_dir/checkpoints/last.pt``, written atomically) hold the model, optimiser,
  scheduler, gradient scaler, step, data positions and every process's random generator states;
  they load with ``torch.load(..., weights_only=True)``. Resuming continues bit-exactly: N steps
  in one go and k steps + resume + N - k steps give identical weights (same hardware and
  thread count). A resumed run whose config changed the schedule (steps, warm-up, lr, min lr,
  encoder ratio) or weight decay continues from the step it reached with the new values.
* Logging: a tqdm bar (rank 0) and JSON lines in ``output_dir/log.jsonl``:
  ``{"event": "train", "step", "lr", "loss", "losses": {task: ...}, "grad_norm", "time",
  "images_per_s"}`` and ``{"event": "val", "step", "val": {task: {"loss", metrics...}}}``.
* Validation on held-out sets every ``val_every`` steps (rank 0): loss per task and quick metrics
  (removal PSNR on [0, 1] images, segmentation foreground IoU at the default threshold,
  tampering mean IoU of the two text classes).
* The final model is written with ``save_pretrained`` to ``output_dir/model`` (the model with the
  lowest validation loss to ``output_dir/best`` when ``save_best``), with a model card.
* Several processes: launch with ``torchrun --nproc_per_node N -m upocr train ...``; with
  ``WORLD_SIZE > 1`` the model is wrapped in DistributedDataParallel (NCCL on CUDA, gloo on CPU);
  only rank 0 writes files.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import threading
import time
from collections.abc import Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..allocator import retain_freed_memory
from ..io import atomic_write_text
from ..tasks import TASKS, canonical_task
from .config import CONFIG_NAME, TrainConfig, TrainingError, budget_lr_factor, learning_rate, lr_factor
from .card import ModelCardMixin
from .log import LOG_NAME, RunLogMixin
from .validation import ValidationMixin
from .sampling import Collate, PositionedDataset, ShardedBatchSampler, TaskStream, _mix, build_task_dataset
from .state import (
    _atomic_save,
    _dist_on,
    _json_safe,
    _world,
    copy_matching_weights,
    parameter_groups,
    rng_state,
    seed_everything,
    set_rng_state,
)

CHECKPOINT_NAME = "last.pt"
#: Checkpoint layout version (bumped on incompatible changes).
CHECKPOINT_VERSION = 1



class Trainer(RunLogMixin, ValidationMixin, ModelCardMixin):
    """Builds everything from a :class:`TrainConfig` and trains.

    ``Trainer(config, resume=False, overwrite=False).train(stop_at=None)``. ``resume`` continues
    from ``output_dir/checkpoints/last.pt``; starting fresh into a folder that already holds a
    checkpoint raises :class:`TrainingError` unless ``overwrite`` (which deletes that run's
    checkpoint, log, config and models first). ``stop_at`` ends the call after that step (with a
    checkpoint) without finishing the schedule; resume later to continue.
    """

    def __init__(self, config: TrainConfig, resume: bool = False, overwrite: bool = False,
                 datasets: Mapping[str, Any] | None = None, val_datasets: Mapping[str, Any] | None = None):
        self.config = config.validated()
        self.rank, self.local_rank, self.world_size = _world()
        self.is_main = self.rank == 0
        self.output_dir = Path(config.output_dir)
        self.checkpoint_path = self.output_dir / "checkpoints" / CHECKPOINT_NAME
        self._prepare_output_dir(resume, overwrite)
        self.device = self._select_device()
        if self.device.type == "cpu":
            retain_freed_memory()  # reuse the pages of freed activations (see upocr.allocator)
        self._init_distributed()
        if config.deterministic and self.device.type == "cuda":
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False

        checkpoint = self._load_checkpoint() if resume else None
        seed_everything(config.seed)
        self.fresh_parameters: list[str] = []
        self.model = self._build_model(checkpoint)
        self.tasks = config.tasks
        missing = [t for t in self.tasks + list(config.val_datasets) if t not in self.model.tasks]
        if missing:
            raise TrainingError(f"the model has no prompt for {', '.join(sorted(set(missing)))}; "
                                f"it knows {', '.join(self.model.tasks)}")
        self.model.to(self.device).train()
        self.ddp_model = self._wrap_ddp(self.model)

        self.use_amp = bool(config.amp and self.device.type == "cuda")
        self.forward_mode = config.forward
        if self.forward_mode == "auto":
            self.forward_mode = "concat" if self.device.type == "cuda" else "per-task"
        self.optimizer = torch.optim.AdamW(parameter_groups(self.model, config), lr=config.lr,
                                           betas=tuple(config.betas), weight_decay=config.weight_decay)
        min_ratio = config.min_lr / config.lr
        steps, warmup = config.steps, config.warmup_steps
        self.elapsed = 0.0  # training seconds so far (restored on resume); a time budget's schedule reads it

        def factor(completed: int) -> float:  # LambdaLR counts completed updates; update k is k + 1
            if config.time_budget_s:
                return budget_lr_factor(completed + 1, self.budget_fraction(), warmup, min_ratio)
            return lr_factor(completed + 1, steps, warmup, min_ratio)

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.amp_dtype = torch.bfloat16 if config.amp_dtype == "bfloat16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.vgg = None
        if config.vgg16_weights:
            from .losses import VGG16Features

            self.vgg = VGG16Features.from_file(config.vgg16_weights).to(self.device)

        self.step = 0
        self.positions = {t: 0 for t in self.tasks}
        self.cpu_seconds = 0.0
        self.best_val: float | None = None
        self.last_val: dict | None = None
        self.images_seen = 0

        self.train_sets = {t: (datasets[t] if datasets and t in datasets
                               else build_task_dataset(config.datasets[t], config.image_size)) for t in self.tasks}
        self.val_sets = {}
        for t, specs in config.val_datasets.items():
            self.val_sets[t] = (val_datasets[t] if val_datasets and t in val_datasets
                                else build_task_dataset(specs, config.val_size))
        if val_datasets:
            for t, ds in val_datasets.items():
                self.val_sets.setdefault(canonical_task(t), ds)

        if checkpoint is not None:
            self._restore(checkpoint)
        else:
            # Different processes draw different drop-path masks; the model was built identically.
            seed_everything(_mix(config.seed, 7919, self.rank))
        self.streams = {t: TaskStream(len(self.train_sets[t]), config.seed, i) for i, t in enumerate(TASKS)
                        if t in self.tasks}
        self._iterators = None
        self._stop_requested = False

    # ------------------------------------------------------------------ setup
    def _prepare_output_dir(self, resume: bool, overwrite: bool) -> None:
        if resume and overwrite:
            raise TrainingError("choose either resume or overwrite")
        exists = self.checkpoint_path.is_file()
        if resume and not exists:
            raise TrainingError(f"nothing to resume: {self.checkpoint_path} does not exist")
        if not resume and exists and not overwrite:
            raise TrainingError(f"{self.output_dir} already holds a training run ({self.checkpoint_path}); "
                                "continue it with --resume or start again with --overwrite")
        if self.is_main and overwrite:
            for name in ("checkpoints", "model", "best"):
                shutil.rmtree(self.output_dir / name, ignore_errors=True)
            for name in (LOG_NAME, CONFIG_NAME):
                (self.output_dir / name).unlink(missing_ok=True)

    def _select_device(self) -> torch.device:
        name = self.config.device
        if not name:
            name = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(name)
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise TrainingError("CUDA was requested but is not available")
            if self.world_size > 1:
                device = torch.device("cuda", self.local_rank)
            elif device.index is None:
                device = torch.device("cuda", torch.cuda.current_device())
            torch.cuda.set_device(device)
        return device

    def _init_distributed(self) -> None:
        self._owns_process_group = False
        if self.world_size > 1 and not _dist_on():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend)
            self._owns_process_group = True

    def _wrap_ddp(self, model: nn.Module) -> nn.Module:
        if self.world_size <= 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def _build_model(self, checkpoint: Mapping | None) -> nn.Module:
        from ..modeling.upocr import UPOCR

        config = self.config
        if checkpoint is not None:
            model = UPOCR(**checkpoint["model_config"])
            model.load_state_dict(checkpoint["model"])
            return model
        if config.init_from:
            try:
                source = UPOCR.from_pretrained(config.init_from)
                model = UPOCR(**{**source.config, **config.model_overrides})
            except (OSError, ValueError) as error:
                raise TrainingError(f"cannot load init_from={config.init_from!r}: {error}") from error
            self.fresh_parameters = copy_matching_weights(source, model)
            return model
        return UPOCR.from_preset(config.preset, **config.model_overrides)

    def _load_checkpoint(self) -> dict:
        checkpoint = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        if checkpoint.get("version") != CHECKPOINT_VERSION:
            raise TrainingError(f"{self.checkpoint_path}: unsupported checkpoint version {checkpoint.get('version')}")
        return checkpoint

    # ------------------------------------------------------------------ state
    def state_dict(self, rng_states: list | None = None) -> dict:
        return {
            "version": CHECKPOINT_VERSION,
            "step": self.step,
            "model_config": _json_safe(self.model.config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "positions": dict(self.positions),
            "rng": rng_states if rng_states is not None else [rng_state()],
            "world_size": self.world_size,
            "elapsed": self.elapsed,
            "cpu_seconds": self.cpu_seconds,
            "images": self.images_seen,
            "best_val": self.best_val,
            "last_val": json.dumps(_json_safe(self.last_val)) if self.last_val is not None else None,
            "config": json.dumps(self.config.to_dict()),
        }

    def _restore(self, checkpoint: Mapping) -> None:
        # The optimiser and scheduler states carry the hyperparameters they were made with; the
        # run's config may have changed them since (a new peak lr, encoder ratio, weight decay or
        # betas). Keep the moments and the step count, take the hyperparameters from the config.
        configured = [{k: g[k] for k in ("initial_lr", "weight_decay", "betas")} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        for group, values in zip(self.optimizer.param_groups, configured):
            group.update(values)
        self.scheduler.base_lrs = [values["initial_lr"] for values in configured]
        for group, base, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas):
            group["lr"] = base * factor(self.scheduler.last_epoch)  # as LambdaLR.step() computes it
        if self.scaler.is_enabled() and checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.step = int(checkpoint["step"])
        self.elapsed = float(checkpoint.get("elapsed", 0.0))
        self.cpu_seconds = float(checkpoint.get("cpu_seconds", 0.0))
        self.images_seen = int(checkpoint.get("images", 0))
        self.best_val = checkpoint.get("best_val")
        self.last_val = json.loads(checkpoint["last_val"]) if checkpoint.get("last_val") else None
        for task in self.tasks:
            self.positions[task] = int(checkpoint["positions"].get(task, 0))
        states = checkpoint.get("rng") or []
        if len(states) == self.world_size:
            set_rng_state(states[self.rank])
        else:  # another number of processes: fresh, still deterministic, generators
            seed_everything(_mix(self.config.seed, 7919, self.rank, self.step))

    def save_checkpoint(self) -> None:
        """All processes call this; rank 0 writes ``last.pt`` atomically."""
        states = [rng_state()]
        if self.world_size > 1:
            gathered: list = [None] * self.world_size
            torch.distributed.all_gather_object(gathered, states[0])
            states = gathered
        if self.is_main:
            _atomic_save(self.state_dict(states), self.checkpoint_path)
        self._barrier()

    def _barrier(self) -> None:
        if self.world_size > 1:
            if self.device.type == "cuda":
                torch.distributed.barrier(device_ids=[self.device.index])
            else:
                torch.distributed.barrier()

    # ------------------------------------------------------------------ data
    def _make_iterators(self) -> dict:
        config = self.config
        iterators = {}
        for task in self.tasks:
            task_id = TASKS.index(task)
            sampler = ShardedBatchSampler(self.streams[task], config.task_batch_size(task), self.positions[task],
                                          self.rank, self.world_size)
            workers = config.task_num_workers(task)
            loader = torch.utils.data.DataLoader(
                PositionedDataset(self.train_sets[task], config.seed, task_id),
                batch_sampler=sampler, num_workers=workers, collate_fn=Collate(config.image_size),
                pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
                prefetch_factor=2 if workers > 0 else None,
                generator=torch.Generator().manual_seed(_mix(config.seed, task_id)),
            )
            iterators[task] = iter(loader)
        return iterators

    def _next_batches(self) -> dict[str, dict]:
        if self._iterators is None:
            self._iterators = self._make_iterators()
        batches = {}
        for task in self.tasks:
            batches[task] = next(self._iterators[task])
            self.positions[task] += self.config.task_batch_size(task) * self.world_size
        return batches

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        if self.use_amp:
            return torch.autocast(device_type="cuda", dtype=self.amp_dtype)
        return nullcontext()

    def compute_losses(self, model: nn.Module, batches: Mapping[str, Mapping]) -> tuple[torch.Tensor, dict]:
        """One forward on the concatenated batches; returns (sum of task losses, {task: parts})."""
        from .losses import task_loss

        dev = self.device
        nb = dev.type == "cuda"
        images = torch.cat([b["image"] for b in batches.values()]).to(dev, non_blocking=nb)
        names = [t for t, b in batches.items() for _ in range(b["image"].shape[0])]
        with self._autocast():
            outputs = model(images, names)
            total = outputs[-1].new_zeros((), dtype=torch.float32)
            parts = {}
            offset = 0
            for task, batch in batches.items():
                n = batch["image"].shape[0]
                outs = [o[offset:offset + n].float() for o in outputs]
                on_device = {"image": images[offset:offset + n].float(),
                             "target": batch["target"].to(dev, non_blocking=nb),
                             "mask": batch["mask"].to(dev, non_blocking=nb)}
                loss, task_parts = task_loss(task, outs, on_device, vgg=self._vgg_for(task),
                                             **self.config.loss_options(task))
                total = total + loss.float()
                parts[task] = {"loss": loss.detach(), **{k: v for k, v in task_parts.items() if k != "total"}}
                offset += n
        return total, parts

    def train_step(self, batches: Mapping[str, Mapping]) -> dict:
        """One optimiser update on one batch per task."""
        self.ddp_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        if self.forward_mode == "concat":
            total, parts = self.compute_losses(self.ddp_model, batches)
            self.scaler.scale(total).backward()
        else:  # one forward/backward per task, gradients accumulated (synchronised once under DDP)
            total, parts = torch.zeros((), device=self.device), {}
            items = list(batches.items())
            for i, (task, batch) in enumerate(items):
                last = i == len(items) - 1
                context = self.ddp_model.no_sync() if self.world_size > 1 and not last else nullcontext()
                with context:
                    loss, task_parts = self.compute_losses(self.ddp_model, {task: batch})
                    self.scaler.scale(loss).backward()
                total += loss.detach()
                parts.update(task_parts)
        self.scaler.unscale_(self.optimizer)
        if self.config.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        else:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), float("inf"))
        if not self.scaler.is_enabled() and not torch.isfinite(grad_norm):
            # float32 and bfloat16 have no loss scaler to skip such a step; all processes see the same norm
            raise TrainingError(f"the gradient is not finite at step {self.step + 1} (loss {float(total):.4g}); "
                                f"lower the learning rate or check the data, then resume from {self.checkpoint_path}")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {"loss": total.detach(), "grad_norm": grad_norm.detach(), "tasks": parts}

    # ------------------------------------------------------------------ validation



    # ------------------------------------------------------------------ logging


    # ------------------------------------------------------------------ signals
    @contextmanager
    def _graceful_stop(self):
        """First SIGINT/SIGTERM: finish the step, save, stop. A second SIGINT interrupts."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {}

        def handler(signum, frame):
            if self._stop_requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_requested = True
            if self.is_main:
                print("\nstopping after this step (checkpoint will be saved); press Ctrl-C again to abort",
                      file=sys.stderr)

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _budget_spent(self) -> bool:
        """Whether the run has used ``cpu_budget_s`` of this process's CPU time (all its threads,
        summed over resumes; data workers not counted)."""
        budget = self.config.cpu_budget_s
        return bool(budget) and self.cpu_seconds >= budget

    def budget_fraction(self) -> float:
        """The part of ``time_budget_s`` used so far (0 without a budget)."""
        budget = self.config.time_budget_s
        return self.elapsed / budget if budget else 0.0

    def _finished(self) -> bool:
        """Whether the run is complete: all ``steps`` done, or its time budget used."""
        return self.step >= self.config.steps or self.budget_fraction() >= 1.0

    def _slowest(self, seconds: float) -> float:
        """The largest of ``seconds`` over all processes."""
        t = torch.tensor([seconds], dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return float(t.item())

    def _should_stop(self) -> bool:
        flag = self._stop_requested
        if self.world_size > 1:
            t = torch.tensor([1.0 if flag else 0.0], device=self.device if self.device.type == "cuda" else "cpu")
            torch.distributed.all_reduce(t)
            flag = bool(t.item() > 0)
        return flag

    # ------------------------------------------------------------------ main loop
    def train(self, stop_at: int | None = None) -> dict:
        """Train until ``config.steps`` (or ``stop_at``). Returns a summary dict."""
        config = self.config
        end = config.steps if stop_at is None else min(int(stop_at), config.steps)
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.output_dir / CONFIG_NAME, config.to_yaml())
            if self.step > 0:
                self._trim_log()
            self._log({"event": "start" if self.step == 0 else "resume", "step": self.step, "time": time.time(),
                       "world_size": self.world_size, "device": str(self.device),
                       "hardware": self.hardware_description(), "parameters": self.model.num_parameters(),
                       **({"fresh_parameters": self.fresh_parameters} if self.fresh_parameters and self.step == 0 else {})})
        images_per_step = sum(config.task_batch_size(t) for t in self.tasks) * self.world_size
        bar = None
        if self.is_main and config.progress and self.step < end:
            from tqdm.auto import tqdm

            bar = tqdm(total=end, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        window = {"count": 0, "loss": 0.0, "tasks": {}, "grad_norm": 0.0, "seconds": 0.0}
        last_val_step = -1
        stopped = False
        try:
            with self._graceful_stop():
                while self.step < end and not self._finished():
                    t0, c0 = time.perf_counter(), time.process_time()
                    used_lr = self.current_lr()
                    batches = self._next_batches()
                    stats = self.train_step(batches)
                    self.step += 1
                    self.images_seen += images_per_step
                    seconds = time.perf_counter() - t0
                    self.elapsed += seconds
                    if config.time_budget_s and self.world_size > 1:
                        self.elapsed = self._slowest(self.elapsed)  # every process ends at the same step
                    self.cpu_seconds += time.process_time() - c0
                    window["seconds"] += seconds
                    self._accumulate(window, stats)
                    if config.log_every and (self.step % config.log_every == 0 or self.step == end):
                        record = self._flush(window, used_lr, images_per_step)
                        if bar is not None:
                            bar.set_postfix_str(self._postfix(record), refresh=False)
                    if bar is not None:
                        bar.update(1)
                    if config.val_every and self.step % config.val_every == 0 and self.val_sets:
                        self._run_validation(bar)
                        last_val_step = self.step
                    if config.save_every and self.step % config.save_every == 0 and self.step < end:
                        self.save_checkpoint()
                    if self.step < end and not self._finished() and (self._should_stop() or self._budget_spent()):
                        stopped = True
                        break
                if window["count"]:  # steps since the last log line (stopped between log steps)
                    self._flush(window, used_lr, images_per_step)
                if self._finished() and self.val_sets and last_val_step != self.step and not stopped:
                    self._run_validation(bar)
                self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()
            self._shutdown_iterators()
        finished = self._finished()
        if finished:
            self.save_model(self.output_dir / "model")
        summary = {"step": self.step, "finished": finished, "stopped": stopped, "elapsed": self.elapsed,
                   "val": self.last_val}
        self._log({"event": "end" if finished else "pause", "step": self.step, "time": time.time(),
                   "elapsed": self.elapsed})
        return summary

    def current_lr(self) -> float:
        """Learning rate of the next update for the non-encoder parameters."""
        for group in self.optimizer.param_groups:
            if group.get("name", "").startswith("main"):
                return float(group["lr"])
        return float(self.optimizer.param_groups[0]["lr"])





    def _shutdown_iterators(self) -> None:
        if self._iterators is not None:
            for it in self._iterators.values():
                shutdown = getattr(it, "_shutdown_workers", None)
                if shutdown is not None:
                    shutdown()
            self._iterators = None

    def close(self) -> None:
        """Release the process group this trainer created."""
        if self._owns_process_group and _dist_on():
            torch.distributed.destroy_process_group()


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False, stop_at: int | None = None) -> dict:
    """Build a :class:`Trainer` and run it; returns its summary."""
    trainer = Trainer(config, resume=resume, overwrite=overwrite)
    try:
        return trainer.train(stop_at=stop_at)
    finally:
        trainer.close()


__all__ = [
    "Collate",
    "PositionedDataset",
    "ShardedBatchSampler",
    "TaskStream",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "learning_rate",
    "lr_factor",
    "parameter_groups",
    "rng_state",
    "set_rng_state",
    "train",
]
