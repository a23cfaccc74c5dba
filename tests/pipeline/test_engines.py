"""Inference engines: ONNX export, the agreement contract, and how ``auto`` chooses."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pytest
import torch
from helpers import MICRO_CONFIG, REPO, make_micro_model

from upocr import engines
from upocr.cli.predict import add_model_arguments
from upocr.engines import Calibration, Engine, TorchEngine, available_engines, calibrate, resolve_engine
from upocr.pipeline import UPOCRPipeline
from upocr.tasks import get_task

DEFAULT_MODEL = REPO / "assets" / "upocr-tiny"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UPOCR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def options_model():
    """A micro model with every option that changes the graph (detail path, residual removal), in
    its initial weights: well conditioned, so float32 runtimes agree to 1e-5 (the randomised
    norms of ``make_micro_model`` make outputs move by 1e-2 between float32 and float64)."""
    from upocr import UPOCR

    torch.manual_seed(3)
    return UPOCR(**MICRO_CONFIG, detail_channels=[4, 8], removal_residual=True).eval()


@pytest.fixture(scope="module")
def options_model_dir(options_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("options-model")
    options_model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def exported(options_model_dir, tmp_path_factory):
    """``upocr export onnx MODEL OUT --check`` on the options model: (path, what it printed)."""
    import contextlib
    import io

    from upocr.cli import main

    out = tmp_path_factory.mktemp("onnx") / "micro.onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", "onnx", str(options_model_dir), str(out), "--check"]) == 0
    return out, printed.getvalue()


@pytest.fixture
def options_onnx(exported):
    return exported[0]


def test_onnx_export_has_dynamic_sizes_and_the_task_as_an_input(options_model, options_onnx):
    import onnx
    import onnxruntime as ort

    graph = onnx.load(str(options_onnx)).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.input}
    assert dims["images"][1] == 3 and all(isinstance(d, str) for d in (dims["images"][0], *dims["images"][2:]))
    assert len(dims["tasks"]) == 1 and isinstance(dims["tasks"][0], str)
    session = ort.InferenceSession(str(options_onnx), providers=["CPUExecutionProvider"])
    tasks = json.loads(session.get_modelmeta().custom_metadata_map["upocr.tasks"])
    assert tasks == options_model.tasks
    import copy

    reference = TorchEngine(options_model, "cpu")
    exact = TorchEngine(copy.deepcopy(options_model).double(), "cpu")
    generator = torch.Generator().manual_seed(1)
    # sizes the export example never had, batches of two and four, one task, tasks out of order
    openvino = engines.OpenVinoEngine(options_onnx, tasks)  # the same file, compiled by OpenVINO at float32
    for shape, asked in [((1, 3, 64, 96), tasks), ((2, 3, 128, 128), tasks[2:]), ((1, 3, 32, 224), tasks[::-1]),
                         ((4, 3, 96, 64), tasks), ((2, 3, 64, 64), tasks[:2])]:
        images = torch.rand(*shape, generator=generator)
        indices = np.array([tasks.index(t) for t in asked], np.int64)
        (out,) = session.run(["outputs"], {"images": images.numpy(), "tasks": indices})
        compiled = openvino.run(images, asked)
        expected, truth = reference.run(images, asked), exact.run(images.double(), asked)
        assert out.shape == (len(asked), *shape)
        for i, task in enumerate(asked):
            # as close to the float64 result as PyTorch's float32 is, and close to it on average
            onnx_error = np.abs(out[i] - truth[task].numpy()).max()
            torch_error = np.abs(expected[task].numpy() - truth[task].numpy()).max()
            assert engines.export_is_faithful(onnx_error, torch_error), (shape, task, onnx_error, torch_error)
            assert np.abs(out[i] - expected[task].numpy()).mean() < 2e-5, (shape, task)
            # OpenVINO's float32 kernels round differently: a few values move by up to 2e-3 (always
            # under the removal bound of 1/255), the mean by as little as ONNX Runtime's
            ours = compiled[task].numpy()
            assert ours.shape == shape and np.abs(ours - expected[task].numpy()).max() < 1 / 255, (shape, task)
            assert np.abs(ours - expected[task].numpy()).mean() < 2e-5, (shape, task)


def test_upocr_export_onnx_writes_a_checked_file_and_keeps_an_existing_one(options_model_dir, exported, capsys):
    from upocr.cli import main

    out, printed = exported
    assert out.is_file() and "(as accurate)" in printed, printed
    before = out.stat().st_mtime_ns
    assert main(["export", "onnx", str(options_model_dir), str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.stat().st_mtime_ns == before


def test_every_engine_on_this_host_is_held_to_the_contract_on_the_bundled_model(cache):
    """The bundled model on the bundled examples and rendered scenes: each available engine is
    measured against fp32; the chosen one agrees and is the fastest that does."""
    from upocr import UPOCR

    model = UPOCR.from_pretrained(DEFAULT_MODEL)
    names = available_engines("cpu")
    assert {"fp32", "int8", "onnxruntime", "openvino"} <= set(names)  # these run on any x86 host
    verdict = calibrate(model, "cpu", compiled=True)  # the engines that compile too
    assert set(verdict.seconds) == set(names)
    for name in names[1:]:
        assert set(verdict.agreement[name]) == set(model.tasks)
        for task, found in verdict.agreement[name].items():
            bound = float(found["bound"].split()[-1])
            value = found["value"]
            assert found["ok"] == (value >= bound if found["higher_is_better"] else value < bound), (name, task)
    assert verdict.agrees("onnxruntime") and verdict.agrees("openvino")  # the float32 graph, other runtimes
    agreeing = [n for n in verdict.seconds if n == "fp32" or verdict.agrees(n)]
    assert verdict.chosen == verdict.choose()
    for compiled in (False, True):  # one-off work never gets an engine that compiles per shape
        pick, candidates = verdict.choose(compiled), [n for n in agreeing if compiled or n not in engines.COMPILED]
        assert pick in candidates
        if pick != "fp32":
            assert verdict.seconds[pick] == min(verdict.seconds[n] for n in candidates)
            assert verdict.seconds["fp32"] / verdict.seconds[pick] >= engines.MIN_SPEEDUP

    # the recorded agreement is what the pipeline's results show, engine against fp32
    scene = engines.calibration_images(model.img_size, count=1)[-1]
    for name in names[1:]:
        ours = UPOCRPipeline(model, device="cpu", mode="resize", engine=name).run_all(scene, "all", preserve_background=False)
        ref = UPOCRPipeline(model, device="cpu", mode="resize", engine="fp32").run_all(scene, "all", preserve_background=False)
        seg = get_task("text-segmentation").agreement(ref["text-segmentation"].mask, ours["text-segmentation"].mask)
        recorded = verdict.agreement[name]["text-segmentation"]["value"]
        assert seg.value >= recorded - 1e-9  # the recorded figure is the worst over all images


class _Shortcut(Engine):
    """An engine that answers from fp32's outputs at once, with the removal output off by ``error``."""

    name = "int8"

    def __init__(self, model, error):
        self.reference, self.error, self.memo = TorchEngine(model, "cpu"), error, {}

    def run(self, batch, tasks):
        key = (batch.data_ptr(), tuple(tasks))
        if key not in self.memo:
            self.memo[key] = self.reference.run(batch, tasks)
        out = dict(self.memo[key])
        clean = out["text-removal"].clamp(0, 1)  # moved towards mid-grey: never clipped, off by exactly error
        out["text-removal"] = clean + self.error * torch.sign(0.5 - clean)
        return out


@pytest.mark.parametrize("error, chosen", [(3 / 255, "fp32"), (0.2 / 255, "int8")])
def test_auto_chooses_a_faster_engine_only_when_it_agrees(monkeypatch, error, chosen):
    model = make_micro_model()
    real_build = engines.build_engine
    monkeypatch.setattr(engines, "build_engine",
                        lambda name, m, device="cpu": _Shortcut(m, error) if name == "int8" else real_build(name, m, device))
    images = [np.random.default_rng(i).integers(0, 256, (128, 128, 3), dtype=np.uint8) for i in range(2)]
    verdict = calibrate(model, "cpu", engines=["int8"], images=images)
    assert verdict.chosen == chosen
    removal = verdict.agreement["int8"]["text-removal"]
    assert removal["value"] == pytest.approx(error * 255, rel=1e-3) and removal["ok"] == (chosen == "int8")


def test_the_auto_verdict_is_kept_per_host_and_model(cache, monkeypatch):
    model = make_micro_model()
    images = [np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)]
    monkeypatch.setattr(engines, "calibration_images", lambda size, count=2: images)
    monkeypatch.setattr(engines, "available_engines", lambda device="cpu": ["fp32", "int8"])
    calls = []
    real = engines.calibrate
    monkeypatch.setattr(engines, "calibrate", lambda *a, **k: calls.append(1) or real(*a, **k))
    engine, verdict = resolve_engine("auto", model)
    assert len(calls) == 1 and isinstance(verdict, Calibration) and engine.name == verdict.chosen
    stored = list((cache / "engines").glob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["chosen"] == verdict.chosen
    assert not engines.needs_calibration("auto", model)
    resolve_engine("auto", make_micro_model())  # the same weights, a new object: no new calibration
    assert len(calls) == 1
    resolve_engine("auto", make_micro_model(seed=1))  # other weights: calibrated for them
    assert len(calls) == 2
    stored[0].write_text("{not json")  # a damaged verdict is measured again, not trusted
    assert engines.needs_calibration("auto", model)


def test_the_pipeline_and_the_cli_take_an_engine(options_model_dir, options_onnx, tmp_path, cache, monkeypatch):
    from upocr import UPOCR

    micro_model_dir = options_model_dir
    # the exported graph goes where the onnxruntime engine looks for this model's export: found, not redone
    loaded = UPOCR.from_pretrained(micro_model_dir)
    cached = cache / "onnx" / f"{engines.model_fingerprint(loaded)}-torch{torch.__version__.split('+')[0]}.onnx"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(options_onnx.read_bytes())
    monkeypatch.setattr(engines, "export_onnx", lambda *a, **k: pytest.fail("the cached export was not used"))
    from upocr.cli import main

    image = REPO / "assets" / "examples" / "receipt.png"
    for name in ("fp32", "int8", "onnxruntime", "openvino"):
        assert main(["predict", "--task", "text-segmentation", "--model", str(micro_model_dir), "--engine", name,
                     "--mode", "resize", str(image), "-o", str(tmp_path / name)]) == 0
    masks = {n: np.asarray(__import__("PIL.Image").Image.open(tmp_path / n / "receipt.png")) > 127
             for n in ("fp32", "onnxruntime", "openvino")}
    assert (masks["fp32"] == masks["onnxruntime"]).mean() > 0.999
    assert (masks["fp32"] == masks["openvino"]).mean() > 0.999
    pipe = UPOCRPipeline.from_pretrained(micro_model_dir, device="cpu", engine="onnxruntime")
    assert pipe.engine.name == "onnxruntime"
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)  # the CLI offers every engine there is
    assert next(a for a in parser._actions if a.dest == "engine").choices == engines.CHOICES
    with pytest.raises(ValueError, match="engine must be one of"):
        UPOCRPipeline.from_pretrained(micro_model_dir, engine="tensorrt")


def test_a_pipeline_preparing_its_engine_in_the_background_serves_in_fp32_meanwhile(micro_model_dir, monkeypatch):
    import threading

    release = threading.Event()

    asked, warmed = [], []

    class Compiling(TorchEngine):  # stands in for an engine that compiles per shape
        def warm_up(self, size, tasks):
            release.wait(30)
            warmed.append((size, tuple(tasks)))

    def slow_resolve(name, model, device="cpu", *, compiled=False):
        asked.append(compiled)
        return Compiling(model, device, name="compile-bf16"), None

    monkeypatch.setattr(engines, "resolve_engine", slow_resolve)
    pipe = UPOCRPipeline.from_pretrained(micro_model_dir, device="cpu", engine="auto", long_running=True)
    pipe.prepare_engine(background=True)
    result = pipe(np.full((64, 64, 3), 200, np.uint8), "text-segmentation")  # while it compiles
    assert result.mask.shape == (64, 64) and pipe.engine.name == "fp32"
    release.set()
    pipe._preparing.join(30)
    assert pipe.engine.name == "compile-bf16" and asked == [True]
    assert warmed == [(pipe.size, tuple(pipe.tasks))]  # the model-size passes compiled before use
    # a one-off pipeline (``upocr predict``) neither asks for a compiling engine nor warms one up
    once = UPOCRPipeline.from_pretrained(micro_model_dir, device="cpu", engine="auto")
    assert once.engine.name == "compile-bf16" and asked == [True, False] and len(warmed) == 1


def test_auto_offers_an_engine_that_compiles_only_to_long_running_work(cache, monkeypatch):
    model = make_micro_model()
    ok, bad = {"ok": True, "value": 1.0}, {"ok": False, "value": 0.5}
    tasks = {t: ok for t in model.tasks}
    verdict = Calibration("fp32", {"fp32": 1.0, "bf16": 0.6, "int8": 0.5, "compile-bf16": 0.35},
                          {"bf16": tasks, "int8": {**tasks, "text-segmentation": bad}, "compile-bf16": tasks},
                          engines.cpu_features(), engines.model_fingerprint(model), 128)
    assert verdict.choose() == "bf16" and verdict.choose(compiled=True) == "compile-bf16"
    verdict.chosen = verdict.choose()
    assert verdict.summary().startswith("engine bf16 (compile-bf16 for long runs);")
    verdict.agreement["compile-bf16"] = {**tasks, "text-removal": bad}
    assert verdict.choose(compiled=True) == "bf16"  # agreement first, then speed

    verdict.agreement["compile-bf16"] = tasks
    verdict.chosen = verdict.choose()
    monkeypatch.setattr(engines, "available_engines", lambda device="cpu": ["fp32", "bf16", "int8", "compile-bf16"])
    engines.atomic_write_json(engines._verdict_path(model, "cpu"), dataclasses.asdict(verdict))
    built = []
    monkeypatch.setattr(engines, "build_engine", lambda name, m, device="cpu": built.append(name) or name)
    assert resolve_engine("auto", model)[0] == "bf16"
    assert resolve_engine("auto", model, compiled=True)[0] == "compile-bf16"
    # a verdict without the compiling engines serves one-off work; long-running work measures them
    verdict.seconds.pop("compile-bf16")
    verdict.agreement.pop("compile-bf16")
    engines.atomic_write_json(engines._verdict_path(model, "cpu"), dataclasses.asdict(verdict))
    assert engines.cached_calibration(model) is not None and not engines.needs_calibration("auto", model)
    assert engines.cached_calibration(model, compiled=True) is None
    assert engines.needs_calibration("auto", model, compiled=True)
    # a verdict that measured an engine this host no longer has is measured again
    monkeypatch.setattr(engines, "available_engines", lambda device="cpu": ["fp32", "bf16"])
    assert engines.cached_calibration(model) is None


@pytest.mark.skipif(engines._cxx_compiler() is None, reason="torch.compile builds CPU kernels with a C++ compiler")
def test_the_compiled_engine_follows_eager_bfloat16_pads_odd_sizes_and_bounds_its_shapes(options_model):
    from torch._dynamo.utils import counters

    from upocr.compiled import CompiledEngine

    engine = CompiledEngine(options_model, max_shapes=1)
    eager = engine.eager
    generator = torch.Generator().manual_seed(0)
    batch = torch.rand(2, 3, 96, 160, generator=generator)  # two images, each padded to 128 x 256

    def by_hand(images, tasks, dtype):  # mirrored to the size multiple, eager, cropped back
        padded = torch.nn.functional.pad(images, (0, 96, 0, 32), mode="reflect")
        indices = torch.tensor([options_model.tasks.index(t) for t in tasks])
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            return eager(padded, indices)[..., :96, :160].float()

    before = counters["stats"]["unique_graphs"]
    tasks = ["text-segmentation", "text-removal"]
    out = engine.run(batch, tasks)
    assert counters["stats"]["unique_graphs"] > before and engine.shapes == {(128, 256, 2)}
    exact, rounded = by_hand(batch, tasks, torch.float32), by_hand(batch, tasks, torch.bfloat16)
    for i, task in enumerate(tasks):
        assert out[task].shape == (2, 3, 96, 160) and out[task].dtype == torch.float32
        # as close to float32 as eager bfloat16 is (the fused kernels round elsewhere, not more)
        ours, theirs = (out[task] - exact[i]).abs().mean(), (rounded[i] - exact[i]).abs().mean()
        assert 0 < ours < 1.5 * theirs, (task, float(ours), float(theirs))

    graphs = counters["stats"]["unique_graphs"]
    other = torch.rand(1, 3, 64, 64, generator=generator)  # a second shape: beyond max_shapes, eager
    out = engine.run(other, ["text-segmentation"])
    assert engine.shapes == {(128, 256, 2)} and counters["stats"]["unique_graphs"] == graphs
    assert out["text-segmentation"].shape == (1, 3, 64, 64)


def _page_of_words(text_px: int, width: int = 1600, height: int = 1200) -> tuple[np.ndarray, np.ndarray]:
    """A light page with rows of dark words ``text_px`` high, and where the ink is."""
    from matplotlib import font_manager
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(0)
    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), text_px)
    image, ink = Image.new("RGB", (width, height), (230, 225, 215)), Image.new("L", (width, height), 0)
    draw, draw_ink = ImageDraw.Draw(image), ImageDraw.Draw(ink)
    y = text_px
    while y < height - 2 * text_px:
        x = text_px
        while x < width - 5 * text_px:
            word = "".join(chr(int(c)) for c in rng.integers(97, 123, int(rng.integers(3, 8))))
            draw.text((x, y), word, font=font, fill=(30, 30, 40))
            draw_ink.text((x, y), word, font=font, fill=255)
            x += int(draw.textlength(word + " ", font=font))
        y += int(text_px * 1.8)
    return np.asarray(image), np.asarray(ink) > 127


def test_text_height_runs_large_text_at_its_scale_and_keeps_small_text_native():
    pipe = UPOCRPipeline.from_pretrained(DEFAULT_MODEL, device="cpu", mode="tile", engine="fp32", text_height=24,
                                         batch_size=4)
    small, _ = _page_of_words(14)
    assert pipe.text_scale(small) == 1.0  # 14 px text would be lost at a smaller scale
    assert pipe.text_scale(np.full((1200, 1600, 3), 230, np.uint8)) == 1.0  # no text: nothing to go by
    large, ink = _page_of_words(90)
    scale = pipe.text_scale(large)
    assert 24 / 90 * 0.6 < scale < 24 / 90 * 2  # about the scale where the words are 24 px high
    windows = []
    real_run = pipe._run
    pipe._run = lambda batch, tasks: windows.append(batch.shape[0]) or real_run(batch, tasks)
    result = pipe(large, "text-segmentation")
    assert result.mask.shape == ink.shape
    iou = (result.mask & ink).sum() / (result.mask | ink).sum()
    assert iou > 0.45  # at native resolution the model sees the 90 px letters as shapes: IoU about 0.01
    assert sum(windows) <= 20  # the text-scale pass and a handful of windows instead of 63
    with pytest.raises(ValueError, match="text_height"):
        UPOCRPipeline.from_pretrained(DEFAULT_MODEL, text_height=0)


def test_an_image_of_a_few_windows_runs_in_one_pass_like_its_tiles():
    image, ink = _page_of_words(18, width=900, height=700)
    masks, passes = {}, {}
    for whole in (None, 0):
        pipe = UPOCRPipeline.from_pretrained(DEFAULT_MODEL, device="cpu", mode="tile", engine="fp32", batch_size=4,
                                             whole_pixels=whole)
        shapes = []
        real_run = pipe._run
        pipe._run = lambda batch, tasks: shapes.append(tuple(batch.shape)) or real_run(batch, tasks)
        masks[whole] = pipe(image, "text-segmentation").mask
        passes[whole] = shapes
    # 900x700 (padded to 928x704) is 2.5 windows of 512x512: one pass by default, six overlapping tiles with 0
    assert passes[None] == [(1, 3, 704, 928)]
    assert sum(s[0] for s in passes[0]) == 6
    one, tiled = masks[None], masks[0]
    assert (one & tiled).sum() / (one | tiled).sum() > 0.95
    assert (one & ink).sum() / (one | ink).sum() > 0.3  # the same model finding the same words


def test_the_paper_benchmark_sets_each_engine_beside_the_reference_computation(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("paper_vs_reference", REPO / "benchmarks" / "paper_vs_reference.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--size", "64", "--engine", "fp32", "--repeat", "1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert "fp32_gemm_gflops" in lines[0]["host"]
    runs = {line["engine"]: line for line in lines[1:]}
    assert set(runs) == {"reference", "fp32"} and runs["reference"]["ratio_to_reference"] == 1.0
    assert runs["fp32"]["seconds"] > 0 and runs["fp32"]["ratio_to_reference"] == pytest.approx(
        runs["fp32"]["seconds"] / runs["reference"]["seconds"], rel=0.01)


def test_the_labelling_stages_benchmark_accounts_for_a_page_stage_by_stage(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("label_stages", REPO / "benchmarks" / "label_stages.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # a page over four windows (auto mode tiles it) with large letters: the first pass shrinks it
    assert bench.main(["--engine", "fp32", "--pages", "1", "--size", "1200x900", "--text-px", "48"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    stages = [report[f"{name}_s"] for name in ("first_pass", "working_pass", "stroke_refinement")]
    assert all(seconds > 0 for seconds in stages)
    assert sum(stages) <= report["run_all_s"] * 1.01  # the stages are parts of one run
    assert report["label_images_per_second_overlapped"] > 0 and report["label_images_per_second_sequential"] > 0
    assert report["working_sizes"] and all("x" in size for size in report["working_sizes"])


def test_bfloat16_keeps_the_pixel_level_stem_in_float32_and_removal_agrees():
    """The patch embedding reads the pixels' detail: in bfloat16 the bundled model's removal
    drifted by 1.4/255 from float32's, over the 1/255 contract."""
    from upocr import UPOCR

    model = UPOCR.from_pretrained(DEFAULT_MODEL).eval()
    batches = [torch.from_numpy(np.array(im, np.float32)).permute(2, 0, 1)[None].div(255)
               for im in engines.calibration_images(model.img_size)]
    seen = []
    hook = model.encoder.patch_embed.register_forward_hook(lambda module, args, out: seen.append(out[0]))
    with torch.inference_mode():
        exact = model.encoder(batches[0])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model.encoder(batches[0])
    hook.remove()
    assert torch.equal(seen[1], seen[0])  # the patch embedding: float32 arithmetic
    assert not torch.allclose(mixed[0], exact[0], atol=1e-3)  # the stages: bfloat16
    fp32, bf16 = TorchEngine(model, "cpu"), TorchEngine(model, "cpu", name="bf16", autocast=torch.bfloat16)
    removal = get_task("text-removal")
    for batch in batches:
        reference, candidate = (e.run(batch, ["text-removal"])["text-removal"][0].clamp(0, 1).numpy() for e in (fp32, bf16))
        assert removal.agreement(reference, candidate).ok
