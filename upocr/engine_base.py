"""What every engine shares (:mod:`upocr.engines` has the engines and how ``auto`` chooses):
the interface, its error, the model's fingerprint and the graph that exports and compiles."""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

import torch
from torch import nn

from .tasks import canonical_task


class EngineError(RuntimeError):
    """An engine cannot run on this host or for this model (the message says why)."""


class Engine:
    """Runs the network on batches: see the module docstring."""

    name = "engine"

    def run(self, batch: torch.Tensor, tasks: Sequence[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def graph_tasks(served: Sequence[str], tasks: Sequence[str], who: str) -> tuple[list[str], list[int]]:
    """The canonical names of ``tasks`` and their indices into ``served`` (an exported or compiled
    graph's task input); :class:`EngineError` naming ``who`` when it does not serve one of them."""
    tasks = [canonical_task(t) for t in tasks]
    missing = [t for t in tasks if t not in served]
    if missing:
        raise EngineError(f"{who} serves {', '.join(served)}, not {', '.join(missing)}")
    return tasks, [list(served).index(t) for t in tasks]


def model_fingerprint(model: nn.Module) -> str:
    """A hash of the model's configuration and weights (computed once per model object)."""
    cached = getattr(model, "_upocr_fingerprint", None)
    if cached is not None:
        return cached
    digest = hashlib.sha256(json.dumps(getattr(model, "config", {}), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    value = digest.hexdigest()[:16]
    model._upocr_fingerprint = value  # a plain attribute: not a parameter, not saved
    return value


class ExportGraph(nn.Module):
    """The graph that :func:`export_onnx` writes: images ``(B, 3, H, W)`` and prompt indices
    ``(T,)`` in, outputs ``(T, B, 3, H, W)`` out. The encoder runs once; the decoder runs on the
    ``T * B`` prompted copies in one batch."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        shared = self.model._shared(self.model.encode(images), images)
        copies = tasks.shape[0]

        def repeat(t: torch.Tensor) -> torch.Tensor:
            return t.repeat(copies, *([1] * (t.ndim - 1)))

        prompted = {key: repeat(value) if torch.is_tensor(value)
                    else [repeat(v) for v in value] if isinstance(value, list) else value
                    for key, value in shared.items()}
        prompts = tasks[:, None].expand(copies, images.shape[0]).reshape(-1)  # task-major, as the copies
        out = self.model._decode_shared(prompted, prompts)[-1]
        return out.view(copies, images.shape[0], *out.shape[1:])
