"""Run state that outlives a process: distributed set-up, random generator states, optimiser
parameter groups, weight transfer for fine-tunes, and atomic checkpoint writing."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..io import atomic_writer
from .config import TrainConfig


def _dist_on() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _world() -> tuple[int, int, int]:
    """(rank, local rank, world size) from the torchrun environment."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


# =============================================================================================
# RNG state (stored as tensors and plain values so that weights_only loading works)
# =============================================================================================


def rng_state() -> dict:
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        # this process's current device only (touching every GPU would create a context on each)
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
    }


def set_rng_state(state: Mapping) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if isinstance(state.get("cuda"), torch.Tensor) and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# =============================================================================================
# Trainer
# =============================================================================================


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """AdamW groups: (encoder | rest) x (decay | no decay); empty groups are dropped. The model
    declares which parameters take no weight decay (``no_weight_decay()``, as timm's models do)
    and which belong to the encoder (``encoder_parameter_names()``)."""
    no_decay_names = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    encoder_names = set(model.encoder_parameter_names()) if hasattr(model, "encoder_parameter_names") else set()
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name in no_decay_names
        buckets.setdefault((name in encoder_names, not no_decay), []).append(param)
    groups = []
    for (encoder, decay), params in sorted(buckets.items()):
        groups.append({
            "params": params,
            "lr": config.lr * (config.lr_encoder_ratio if encoder else 1.0),
            "weight_decay": config.weight_decay if decay else 0.0,
            "name": f"{'encoder' if encoder else 'main'}{'' if decay else '_no_decay'}",
        })
    return groups


def copy_matching_weights(source: nn.Module, target: nn.Module) -> list[str]:
    """Copy every tensor of ``source`` into ``target`` where name and shape match (a fine-tune
    that adds modules, such as a detail path, keeps everything the two models share). Returns
    the names of ``target``'s tensors that stayed freshly initialised, sorted."""
    theirs = source.state_dict()
    ours = target.state_dict()
    kept = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
    target.load_state_dict(kept, strict=False)
    return sorted(set(ours) - set(kept))


def _atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically (fsynced temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path, "wb") as handle:
        torch.save(obj, handle)


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _round(value: Any, digits: int = 6) -> Any:
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, Mapping):
        return {k: _round(v, digits) for k, v in value.items()}
    return value
