"""The ``compile-bf16`` engine: the network compiled by ``torch.compile`` for the CPU.

See :mod:`upocr.engines` for the engines and how ``auto`` chooses among them.
"""

from __future__ import annotations

import copy
import threading
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .engine_base import Engine, ExportGraph, graph_tasks, model_fingerprint
from .tasks import canonical_task

#: A compiled engine compiles at most this many input shapes; others run in eager bfloat16.
MAX_COMPILED_SHAPES = 6


class CompiledEngine(Engine):
    """The exported graph's computation (images and task indices in) compiled by
    ``torch.compile`` for the CPU under bfloat16 autocast, with the weights frozen into the graph
    (TorchInductor's ``freezing``): elementwise work, normalisations and layout copies become
    fused, vectorised kernels around oneDNN's bfloat16 matrix products.

    Shapes are static: each image size and number of tasks is compiled on its first pass (30-80 s
    on two cores; images of a batch run one at a time, so the batch size is not a shape). At most
    ``max_shapes`` are compiled; a pass at any other shape runs the same model in eager bfloat16.
    Inputs are padded (mirrored) to multiples of :attr:`size_multiple`, which bounds the number of
    shapes a folder of photos can bring, and the outputs cropped back. One pass at a time."""

    name = "compile-bf16"
    #: Sides are padded to multiples of this before compiling (so nearby sizes share a graph).
    size_multiple = 128

    def __init__(self, model: nn.Module, *, max_shapes: int = MAX_COMPILED_SHAPES):
        self.tasks = [canonical_task(t) for t in model.tasks]
        self.eager = ExportGraph(copy.deepcopy(model).to("cpu").float().eval()).eval()
        self.compiled = torch.compile(self.eager, dynamic=False, options={"freezing": True})
        self.max_shapes = int(max_shapes)
        self.shapes: set[tuple] = set()
        self._lock = threading.Lock()

    def warm_up(self, size: int, tasks: Sequence[str]) -> None:
        """Compile the passes of a ``size x size`` image for one task, two tasks (text removal
        kept to the text mask) and all ``tasks``: the app's passes in resize mode."""
        tasks = list(tasks)
        for count in sorted({1, min(2, len(tasks)), len(tasks)}):
            self.run(torch.zeros(1, 3, size, size), tasks[:count])

    def run(self, batch: torch.Tensor, tasks: Sequence[str]) -> dict[str, torch.Tensor]:
        tasks, found = graph_tasks(self.tasks, tasks, "this model")
        indices = torch.tensor(found, dtype=torch.long)
        h, w = batch.shape[-2:]
        m = self.size_multiple
        ph, pw = -(-h // m) * m, -(-w // m) * m
        outs = []
        with self._lock, torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            for image in batch.detach().to("cpu", torch.float32).split(1):
                if (ph, pw) != (h, w):
                    mode = "reflect" if ph - h < h and pw - w < w else "replicate"
                    image = F.pad(image, (0, pw - w, 0, ph - h), mode=mode)
                key = (ph, pw, len(tasks))
                if key not in self.shapes and len(self.shapes) < self.max_shapes:
                    self.shapes.add(key)
                run = self.compiled if key in self.shapes else self.eager
                outs.append(run(image.contiguous(), indices)[..., :h, :w].float())
        out = torch.cat(outs, dim=1)  # (T, B, 3, h, w)
        return {t: out[i] for i, t in enumerate(tasks)}


_compiled_engines: dict[str, CompiledEngine] = {}
_compiled_lock = threading.Lock()


def compiled_engine(model: nn.Module) -> CompiledEngine:
    """The :class:`CompiledEngine` of ``model`` (one per model in a process, so its compiled
    shapes serve every pipeline that uses the model)."""
    key = model_fingerprint(model)
    with _compiled_lock:
        engine = _compiled_engines.get(key)
        if engine is None:
            engine = _compiled_engines[key] = CompiledEngine(model)
    return engine
