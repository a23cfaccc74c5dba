"""Inference engines: who runs the network's forward pass, and how ``engine="auto"`` chooses.

An :class:`Engine` takes a float batch ``(B, 3, h, w)`` in [0, 1] (sides multiples of 32) and a
list of tasks, and returns the final-scale outputs ``{task: (B, 3, h, w)}``, exactly what
``UPOCR.forward_tasks`` gives at its last scale. The engines:

- ``fp32``: the PyTorch model in float32 (the reference every other engine is held to);
- ``bf16``: the same model under bfloat16 autocast, offered where the CPU computes bfloat16
  natively (AVX512-BF16 or AMX) and on CUDA;
- ``int8``: a copy whose linear layers are dynamically quantised to int8 (weights int8,
  activations quantised per batch; VNNI instructions where present);
- ``onnxruntime``: the model exported to ONNX (:func:`export_onnx`, dynamic height, width, batch
  and tasks) and run by ONNX Runtime's CPU provider;
- ``openvino``: the same graph compiled by OpenVINO for the CPU at float32 precision, and
  ``openvino-bf16``: compiled with bfloat16 inference precision (offered where the CPU computes
  bfloat16 natively);
- ``compile-bf16``: the same graph compiled by ``torch.compile`` (TorchInductor, weights frozen
  into the graph) under bfloat16 autocast (offered where the CPU computes bfloat16 natively and a
  C++ compiler is installed). It compiles once per input shape, tens of seconds each time, so
  ``auto`` offers it only to long-lived work (:data:`COMPILED`).

``auto`` (:func:`resolve_engine`) runs a short calibration (:func:`calibrate`): each available
engine on the bundled examples and on rendered scenes, its outputs compared with fp32 through
each task's :meth:`~upocr.tasks.base.Task.agreement` (mask IoU >= 0.99, tampering labels equal on
>= 99 % of pixels, removal within 1/255 mean absolute difference) and timed; the fastest engine
that agrees is chosen. The verdict is cached per host (CPU model, instruction sets, library
versions, threads) and per model (a hash of its configuration and weights) under
:func:`cache_dir`, so later runs start at once.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import importlib
import json
import os
import platform
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .engine_base import Engine, EngineError, ExportGraph, graph_tasks, model_fingerprint  # noqa: F401 (the interface, here too)
from .io import atomic_write_json
from .tasks import DEFAULT_SEGMENTATION_THRESHOLD, canonical_task, get_task

ENGINES = ("fp32", "bf16", "int8", "onnxruntime", "openvino", "openvino-bf16", "compile-bf16")
#: Engines that compile the network for every new input shape (a first pass at a shape takes
#: tens of seconds): ``auto`` picks them only for long-lived work, such as the app and
#: ``upocr label`` (``resolve_engine(..., compiled=True)``), never for a one-off prediction.
COMPILED = ("compile-bf16",)
CHOICES = ("auto", *ENGINES)
#: Environment variable naming the engine when none is given (default ``auto``).
ENGINE_ENV = "UPOCR_ENGINE"
#: An engine must be at least this much faster than fp32 to be chosen over it.
MIN_SPEEDUP = 1.1
#: Bumped whenever the calibration's inputs or rules change (old verdicts are then ignored).
CALIBRATION_VERSION = 5  # 5: the patch embedding in float32 under autocast; soft stroke refinement
_EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"


def cache_dir() -> Path:
    """Where engine verdicts and exported graphs are kept: ``$UPOCR_CACHE``, else
    ``$XDG_CACHE_HOME/upocr``, else ``~/.cache/upocr``."""
    if os.environ.get("UPOCR_CACHE"):
        return Path(os.environ["UPOCR_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "upocr"


# ---------------------------------------------------------------------------- the host
_FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
                      "amx_tile")


@functools.cache
def cpu_features() -> dict:
    """The CPU model and the instruction sets the engines care about (from ``/proc/cpuinfo``)."""
    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():  # the first processor's entries
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name" and not name:
                name = value
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    return {"cpu": name, "flags": sorted(f for f in _FLAGS_OF_INTEREST if f in flags),
            "torch_capability": torch.backends.cpu.get_cpu_capability()}


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX-BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_features()["flags"]))


def _optional(module: str):
    """The installed module ``module`` (an optional runtime), or None."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def available_engines(device: torch.device | str = "cpu") -> list[str]:
    """The engines that can run on this host, fp32 first."""
    if torch.device(device).type != "cpu":
        return ["fp32", "bf16"]
    names = ["fp32"]
    if native_bfloat16():
        names.append("bf16")
    if {"x86", "fbgemm", "qnnpack"} & set(torch.backends.quantized.supported_engines):
        names.append("int8")
    if _optional("onnxruntime") is not None:
        names.append("onnxruntime")
    if _optional("openvino") is not None:
        names += ["openvino", "openvino-bf16"] if native_bfloat16() else ["openvino"]
    if native_bfloat16() and _cxx_compiler():
        names.append("compile-bf16")
    return names


def _cxx_compiler() -> str | None:
    """The C++ compiler TorchInductor builds its CPU kernels with (``$CXX``, else ``g++``/``c++``)."""
    return next((found for c in (os.environ.get("CXX"), "g++", "c++") if c and (found := shutil.which(c))), None)


def host_key(device: torch.device | str = "cpu") -> str:
    """What an engine verdict depends on besides the model: CPU, instruction sets, versions, threads."""
    ort, ov = _optional("onnxruntime"), _optional("openvino")
    parts = {**cpu_features(), "torch": torch.__version__, "onnxruntime": ort and ort.__version__,
             "openvino": ov and ov.__version__,
             "threads": torch.get_num_threads(), "device": str(torch.device(device))}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------- engines
class TorchEngine(Engine):
    """A PyTorch model (float32, under autocast, or quantised) on a device."""

    def __init__(self, model: nn.Module, device: torch.device | str, *, name: str = "fp32",
                 autocast: torch.dtype | None = None):
        self.model, self.device, self.name, self.autocast = model, torch.device(device), name, autocast

    def run(self, batch: torch.Tensor, tasks: Sequence[str]) -> dict[str, torch.Tensor]:
        tasks = list(tasks)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.autocast or torch.bfloat16,
                                                    enabled=self.autocast is not None):
            batch = batch.to(self.device)
            if len(tasks) == 1:
                outs = {tasks[0]: self.model(batch, tasks[0])}
            else:
                outs = self.model.forward_tasks(batch, tasks)
        return {t: o[-1] if o[-1].dtype == torch.float64 else o[-1].float() for t, o in outs.items()}


def quantized_copy(model: nn.Module) -> nn.Module:
    """A CPU copy of ``model`` whose token-wise linear layers hold int8 weights and quantise their
    inputs per batch (``torch.ao.quantization.quantize_dynamic``). The position-bias MLPs stay in
    float32: they run once per model, and their output is cached."""
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    backend = "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"
    if backend in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = backend
    clone = copy.deepcopy(model).to("cpu").eval()
    spec = {name: default_dynamic_qconfig for name, module in clone.named_modules()
            if isinstance(module, nn.Linear) and ".cpb_mlp." not in name}
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore", category=(DeprecationWarning, FutureWarning, UserWarning))
        return quantize_dynamic(clone, spec, dtype=torch.qint8)


def export_onnx(model: nn.Module, path: str | os.PathLike, *, opset: int | None = None,
                max_side: int = 8192) -> Path:
    """Write ``model`` as one ONNX file with inputs ``images`` (float32 ``(B, 3, H, W)`` in
    [0, 1]; H and W multiples of 32, up to ``max_side``) and ``tasks`` (int64 ``(T,)``, indices
    into ``model.tasks``, which the file's metadata lists), and output ``outputs``
    (``(T, B, 3, H, W)``, each task's final-scale output). Batch, tasks, H and W are dynamic.
    The file is written atomically."""
    from torch.export import Dim

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportGraph(copy.deepcopy(model).to("cpu").float().eval()).eval()
    # an example with at least two windows each way at every stage, and as many images as tasks
    # nowhere: sizes 0 and 1, and equal sizes, could be specialised or tied together
    example = (torch.rand(3, 3, 320, 352), torch.arange(min(2, len(model.tasks))).repeat(2)[:2])
    sides = {2: 32 * Dim("h32", min=1, max=max_side // 32), 3: 32 * Dim("w32", min=1, max=max_side // 32)}
    shapes = {"images": {0: Dim("batch", min=1, max=4096), **sides}, "tasks": {0: Dim("tasks", min=1, max=64)}}
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".onnx-") as tmp, torch.no_grad():
        program = torch.onnx.export(wrapper, example, input_names=["images", "tasks"], output_names=["outputs"],
                                    dynamo=True, dynamic_shapes=shapes, opset_version=opset, verbose=False)
        program.model.metadata_props.update({"upocr.tasks": json.dumps(list(model.tasks)),
                                             "upocr.config": json.dumps(getattr(model, "config", {}), default=str),
                                             "upocr.size_multiple": "32"})
        staged = Path(tmp) / path.name
        program.save(staged, external_data=False)
        os.replace(staged, path)
    return path


class _GraphEngine(Engine):
    """An exported graph (:func:`export_onnx`): images and task indices in, ``(T, B, 3, H, W)`` out."""

    tasks: list[str]
    path: Path

    def _inputs(self, batch: torch.Tensor, tasks: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        tasks, indices = graph_tasks(self.tasks, tasks, self.path.name)
        images = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        return tasks, images, np.array(indices, dtype=np.int64)

    def run(self, batch: torch.Tensor, tasks: Sequence[str]) -> dict[str, torch.Tensor]:
        tasks, images, indices = self._inputs(batch, tasks)
        out = self._infer(images, indices)
        return {t: torch.from_numpy(out[i]) for i, t in enumerate(tasks)}

    def _infer(self, images: np.ndarray, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class OnnxRuntimeEngine(_GraphEngine):
    """An exported model (:func:`export_onnx`) run by ONNX Runtime on the CPU."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None):
        ort = _optional("onnxruntime")
        if ort is None:
            raise EngineError("the onnxruntime engine needs the onnxruntime package (pip install onnxruntime)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.tasks = json.loads(meta.get("upocr.tasks", "[]"))
        self.path = Path(path)

    def _infer(self, images: np.ndarray, indices: np.ndarray) -> np.ndarray:
        return self.session.run(["outputs"], {"images": images, "tasks": indices})[0]


class OpenVinoEngine(_GraphEngine):
    """An exported model (:func:`export_onnx`) compiled by OpenVINO for the CPU, at float32
    (``precision="f32"``) or bfloat16 (``"bf16"``) inference precision, tuned for latency."""

    def __init__(self, path: str | os.PathLike, tasks: Sequence[str], *, precision: str = "f32",
                 threads: int | None = None):
        ov = _optional("openvino")
        if ov is None:
            raise EngineError("the openvino engines need the openvino package (pip install openvino)")
        self.name = "openvino" if precision == "f32" else f"openvino-{precision}"
        self.path, self.tasks = Path(path), [canonical_task(t) for t in tasks]
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self._lock = threading.Lock()  # one infer request, used by one thread at a time
        self.request = self.compiled.create_infer_request()

    def _infer(self, images: np.ndarray, indices: np.ndarray) -> np.ndarray:
        with self._lock:
            self.request.infer({"images": images, "tasks": indices})
            return self.request.get_output_tensor(0).data.copy()


_export_lock = threading.Lock()


def onnx_for(model: nn.Module) -> Path:
    """The model's exported graph in the cache (exported on first use, keyed by the model's hash
    and the torch version)."""
    tag = torch.__version__.split("+")[0]
    path = cache_dir() / "onnx" / f"{model_fingerprint(model)}-torch{tag}.onnx"
    with _export_lock:
        if not path.is_file():
            export_onnx(model, path)
    return path


def build_engine(name: str, model: nn.Module, device: torch.device | str = "cpu") -> Engine:
    """The engine ``name`` (one of :data:`ENGINES`) for ``model`` on ``device``."""
    device = torch.device(device)
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(CHOICES)}, got {name!r}")
    if name not in available_engines(device):
        why = {"bf16": "this CPU has no native bfloat16 (AVX512-BF16 or AMX)",
               "int8": "this PyTorch build has no quantised CPU kernels",
               "onnxruntime": "onnxruntime is not installed (pip install onnxruntime)",
               "openvino": "openvino is not installed (pip install openvino)",
               "openvino-bf16": "it needs openvino and a CPU with native bfloat16 (AVX512-BF16 or AMX)",
               "compile-bf16": "it needs a CPU with native bfloat16 (AVX512-BF16 or AMX) and a C++ compiler (g++)",
               }.get(name, "")
        raise EngineError(f"the {name} engine is not available on {device.type}: {why}")
    if name == "fp32":
        return TorchEngine(model, device)
    if name == "bf16":
        return TorchEngine(model, device, name="bf16", autocast=torch.bfloat16)
    if name == "int8":
        return TorchEngine(quantized_copy(model), "cpu", name="int8")
    if name == "compile-bf16":
        from .compiled import compiled_engine

        return compiled_engine(model)
    if name.startswith("openvino"):
        return OpenVinoEngine(onnx_for(model), model.tasks, precision="bf16" if name == "openvino-bf16" else "f32")
    return OnnxRuntimeEngine(onnx_for(model))


# ---------------------------------------------------------------------------- calibration
@dataclasses.dataclass
class Calibration:
    """What :func:`calibrate` found: per engine its seconds per pass and its agreement per task."""

    chosen: str
    seconds: dict[str, float]
    agreement: dict[str, dict[str, dict]]
    host: dict
    model: str
    size: int
    version: int = CALIBRATION_VERSION

    def agrees(self, name: str) -> bool:
        return all(a["ok"] for a in self.agreement.get(name, {}).values())

    def choose(self, compiled: bool = False) -> str:
        """The fastest engine that agrees with fp32 and beats it by :data:`MIN_SPEEDUP` (else
        fp32); engines of :data:`COMPILED` only with ``compiled=True``. ``chosen`` is the choice
        without them."""
        usable = [n for n in self.seconds if (n == "fp32" or self.agrees(n)) and (compiled or n not in COMPILED)]
        fastest = min(usable, key=self.seconds.get)
        return fastest if fastest == "fp32" or self.seconds["fp32"] / self.seconds[fastest] >= MIN_SPEEDUP else "fp32"

    def summary(self) -> str:
        rows = []
        for name, secs in self.seconds.items():
            worst = ", ".join(f"{t.split('-')[-1]} {a['value']:.4g}" for t, a in self.agreement.get(name, {}).items())
            rows.append(f"{name}: {secs * 1000:.0f} ms" + (f" ({worst})" if worst else "")
                        + ("" if self.agrees(name) else " disagrees"))
        lasting = self.choose(compiled=True)
        also = f" ({lasting} for long runs)" if lasting != self.chosen else ""
        return f"engine {self.chosen}{also}; " + "; ".join(rows)


def calibration_images(size: int, count: int = 2) -> list[np.ndarray]:
    """The bundled example images and ``count`` rendered scenes, each ``size x size`` uint8 RGB."""
    from PIL import Image

    from .io import read_image

    images = []
    for path in sorted(_EXAMPLES.glob("*")) if _EXAMPLES.is_dir() else []:
        try:
            rgb = read_image(path)
        except ValueError:
            continue
        images.append(np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC)))
    if count:
        from .data.synth import generate_sample

        for index in range(count):
            sample = generate_sample("text-segmentation", index, seed=2024, size=size)
            images.append(np.ascontiguousarray(sample["image"]))
    return images


def _passes(engine: Engine, batches: list[torch.Tensor], tasks: list[str]) -> tuple[list, float]:
    outputs = [engine.run(b, tasks) for b in batches]  # also the warm-up
    times = []
    for _ in range(2):
        start = time.perf_counter()
        for b in batches:
            engine.run(b, tasks)
        times.append((time.perf_counter() - start) / len(batches))
    return outputs, min(times)


def calibrate(model: nn.Module, device: torch.device | str = "cpu", *, engines: Sequence[str] | None = None,
              images: Sequence[np.ndarray] | None = None, compiled: bool = False) -> Calibration:
    """Run every engine in ``engines`` (default: all available, those of :data:`COMPILED` only
    with ``compiled=True``) on ``images`` (default: :func:`calibration_images` at the model size)
    for all the model's tasks; keep as ``chosen`` the fastest that agrees with fp32 (and beats it
    by :data:`MIN_SPEEDUP`) among the engines that need no compiling per shape
    (:meth:`Calibration.choose` also weighs those)."""
    device = torch.device(device)
    names = [n for n in (engines or available_engines(device)) if n != "fp32" and (
        engines or compiled or n not in COMPILED)]
    size = int(getattr(model, "img_size", 256))
    images = list(images) if images is not None else calibration_images(size)
    tasks = list(model.tasks)
    batches = [torch.from_numpy(np.array(im, np.float32)).permute(2, 0, 1)[None].div(255) for im in images]
    reference, seconds = _passes(build_engine("fp32", model, device), batches, tasks)
    timings, agreement = {"fp32": seconds}, {}
    for name in names:
        try:
            outputs, seconds = _passes(build_engine(name, model, device), batches, tasks)
        except Exception as error:  # an engine that fails here is simply not chosen
            agreement[name] = {"engine": {"measure": "runs", "value": 0.0, "bound": "runs", "ok": False,
                                          "error": str(error).splitlines()[0][:300]}}
            continue
        timings[name] = seconds
        agreement[name] = _agreement(tasks, reference, outputs, batches, _decision_settings(model))
    verdict = Calibration("fp32", timings, agreement, cpu_features(), model_fingerprint(model), size)
    verdict.chosen = verdict.choose()
    return verdict


def _decision_settings(model: nn.Module) -> dict:
    """The model's decision settings, as the pipeline applies them (see :class:`upocr.UPOCR`)."""
    return {"stroke_refinement": getattr(model, "stroke_refinement", None),
            "tampered_bias": getattr(model, "tampered_bias", 0.0)}


def _agreement(tasks: list[str], reference: list[dict], outputs: list[dict], batches: list[torch.Tensor],
               settings: dict) -> dict[str, dict]:
    """The worst agreement over the images, per task, of the decisions the pipeline takes from
    the outputs (with the model's decision ``settings``)."""
    worst = {}
    for task in tasks:
        spec = get_task(task)
        found = []
        for ref, out, batch in zip(reference, outputs, batches):
            images = (batch.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
            for r, o, image in zip(ref[task].clamp(0, 1).numpy(), out[task].clamp(0, 1).numpy(), images):
                decide = {"image": image, **settings}
                found.append(spec.agreement(spec.prediction(r, DEFAULT_SEGMENTATION_THRESHOLD, **decide),
                                            spec.prediction(o, DEFAULT_SEGMENTATION_THRESHOLD, **decide)))
        worst[task] = dataclasses.asdict(min(found, key=lambda a: (a.ok, a.value if a.higher_is_better else -a.value)))
    return worst


def _verdict_path(model: nn.Module, device) -> Path:
    return cache_dir() / "engines" / f"{host_key(device)}-{model_fingerprint(model)}.json"


def cached_calibration(model: nn.Module, device: torch.device | str = "cpu", *,
                       compiled: bool = False) -> Calibration | None:
    """The stored verdict for this host and model, or None (missing, unreadable, outdated, or
    with ``compiled=True`` not yet measuring the engines of :data:`COMPILED` this host has)."""
    try:
        data = json.loads(_verdict_path(model, device).read_text())
        verdict = Calibration(**data)
    except (OSError, ValueError, TypeError):
        return None
    here = set(available_engines(device))
    if verdict.version != CALIBRATION_VERSION or not set(verdict.seconds) <= here:
        return None
    if compiled and not (here & set(COMPILED)) <= set(verdict.seconds):
        return None
    return verdict


_calibration_lock = threading.Lock()


def needs_calibration(name: str | None, model: nn.Module, device: torch.device | str = "cpu", *,
                      compiled: bool = False) -> bool:
    """Whether resolving ``name`` will calibrate first (``auto`` without a stored verdict)."""
    name = name or os.environ.get(ENGINE_ENV) or "auto"
    return (name == "auto" and torch.device(device).type == "cpu"
            and cached_calibration(model, device, compiled=compiled) is None)


def resolve_engine(name: str | None, model: nn.Module, device: torch.device | str = "cpu", *,
                   compiled: bool = False) -> tuple[Engine, Calibration | None]:
    """The engine to use: ``name``, or ``$UPOCR_ENGINE``, or ``auto`` (the cached verdict for
    this host and model, else a fresh calibration that is then stored). ``compiled``: the caller
    runs many images, so ``auto`` may pick an engine that compiles per input shape."""
    name = name or os.environ.get(ENGINE_ENV) or "auto"
    if name not in CHOICES:
        raise ValueError(f"engine must be one of {', '.join(CHOICES)}, got {name!r}")
    if name != "auto":
        return build_engine(name, model, device), None
    with _calibration_lock:
        verdict = cached_calibration(model, device, compiled=compiled)
        if verdict is None:
            verdict = calibrate(model, device, compiled=compiled)
            atomic_write_json(_verdict_path(model, device), dataclasses.asdict(verdict))
    return build_engine(verdict.choose(compiled), model, device), verdict


def compare_with_pytorch(model: nn.Module, path: str | os.PathLike,
                        sizes=((256, 256), (96, 320))) -> tuple[float, float]:
    """How far ONNX Runtime on ``path`` and the PyTorch model in float32 each land from the
    PyTorch model in float64 (largest absolute difference, all tasks, random images of ``sizes``).
    A faithful export is about as close as PyTorch's own float32 (:func:`export_is_faithful`)."""
    engine, reference = OnnxRuntimeEngine(path), TorchEngine(model, "cpu")
    exact = TorchEngine(copy.deepcopy(model).to("cpu").double().eval(), "cpu")
    generator = torch.Generator().manual_seed(0)
    ours = theirs = 0.0
    for h, w in sizes:
        batch = torch.rand(1, 3, h, w, generator=generator)
        truth = exact.run(batch.double(), model.tasks)
        a, b = engine.run(batch, model.tasks), reference.run(batch, model.tasks)
        ours = max(ours, max(float((a[t].double() - truth[t]).abs().max()) for t in model.tasks))
        theirs = max(theirs, max(float((b[t].double() - truth[t]).abs().max()) for t in model.tasks))
    return ours, theirs


#: An export whose outputs stay this close to float64 is faithful whatever PyTorch's own error:
#: a quarter of one level of an 8-bit image. (PyTorch's float32 error depends on the host's
#: kernels: on an AMX host it is 4e-5 where ONNX Runtime's is 2.3e-4, both far below a level.)
FAITHFUL_ERROR = 1e-3


def export_is_faithful(onnx_error: float, torch_error: float) -> bool:
    """Whether the export's distance from float64 is within a few times PyTorch float32's own,
    or below :data:`FAITHFUL_ERROR`."""
    return onnx_error <= max(4 * torch_error + 1e-5, FAITHFUL_ERROR)
