"""Ablations for the default model: short runs at one fixed CPU budget, scored on held-out scenes.

    python tools/ablations.py --out ~/.cache/upocr/ablations --budget 1200 [--variants a,b] [--threads 2]

Every variant fine-tunes the current default weights (``assets/upocr-tiny``; tensors a variant
adds, such as a detail path, start fresh) with the same seed, learning rate and batch, until the
training process has used ``--budget`` seconds of CPU time (``cpu_budget_s``: all threads summed,
data rendered in the same process so it counts too). Each variant changes one thing over the one
before it, so a row's gain is that change's. The score is the release tool's measurement
(``tools/release_default_model.py``): held-out scenes at 512x512 rendered with fonts and photos
from typefaces and pictures no variant trains on, through ``UPOCRPipeline`` with its defaults,
plus scikit-image's printed page against its ink.

Runs live under ``--out`` (outside the repository); a variant whose ``metrics.json`` exists is
not run again, and a stopped one resumes, so the script can be rerun after any stop. It prints
the table as Markdown (``--table`` prints it without running anything).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

SEED = 0
#: Fonts and photos of the scored scenes (their held-out part) and of the variants with variety.
VARIED = ["debian", "default"]
#: What every variant shares: a warm start from the current default, its loss weights and lr.
BASE = {
    "init_from": str(ROOT / "assets" / "upocr-tiny"),
    "model_overrides": {},
    "image_size": 128,
    "batch_size": {"text-segmentation": 8, "tampered-text-detection": 4, "text-removal": 4},
    "num_workers": 0,
    "steps": 100_000,  # the budget ends the run; a long schedule keeps the rate near its peak
    "warmup_steps": 50,
    "lr": 3.0e-4,
    "lr_encoder_ratio": 1.0,
    "min_lr": 1.0e-5,
    "weight_decay": 1.0e-4,
    "grad_clip": 1.0,
    "foreground_weight": {"text-segmentation": 2, "tampered-text-detection": 2},
    "seed": SEED,
    "log_every": 20,
    "save_every": 100,
    "val_every": 0,
    "save_best": False,
    "progress": False,
}


def _datasets(size: int, fonts, backgrounds) -> dict:
    spec = {"format": "synthetic", "split": "train", "seed": SEED, "length": 1_000_000, "size": size, "crop": 128}
    if fonts is not None:
        spec.update(fonts=fonts, backgrounds=backgrounds)
    return {t: [dict(spec)] for t in ("text-removal", "text-segmentation", "tampered-text-detection")}


def variants() -> dict[str, dict]:
    """Each variant adds one change to the one before it."""
    out: dict[str, dict] = {}
    v1 = copy.deepcopy(BASE)
    v1["datasets"] = _datasets(256, None, None)
    out["v1-recipe"] = v1  # today's model and data, trained on for the same budget
    variety = copy.deepcopy(v1)
    variety["datasets"] = _datasets(256, VARIED, VARIED)
    out["variety"] = variety  # + fonts and photos from the Debian packages
    native = copy.deepcopy(variety)
    native["datasets"] = _datasets(512, VARIED, VARIED)
    native["model_overrides"] = {"img_size": 512}
    out["native-512"] = native  # + the model works at 512 (text at the size users have)
    detail = copy.deepcopy(native)
    detail["model_overrides"] = {**native["model_overrides"], "detail_channels": [16, 32]}
    out["detail"] = detail  # + the full- and half-resolution detail path
    residual = copy.deepcopy(detail)
    residual["model_overrides"] = {**detail["model_overrides"], "removal_residual": True}
    out["residual"] = residual  # + removal as an edit of the input
    return out


def run_variant(name: str, config: dict, out: Path, budget: float, threads: int, count: int) -> dict:
    folder = out / name
    metrics_path = folder / "metrics.json"
    if metrics_path.is_file():
        return json.loads(metrics_path.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    config = {**config, "cpu_budget_s": budget, "output_dir": str(folder / "run")}
    config_path = folder / "train.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    resume = (folder / "run" / "checkpoints" / "last.pt").is_file()
    command = [sys.executable, "-m", "upocr", "train", "--config", str(config_path), "--threads", str(threads)]
    if resume:
        command.append("--resume")
    print(f"[{name}] {' '.join(command)}", flush=True)
    started = time.time()
    subprocess.run(command, check=True, cwd=ROOT)
    return score(name, folder, count, threads, time.time() - started)


def score(name: str, folder: Path, count: int, threads: int, wall: float) -> dict:
    import torch

    from release_default_model import load_run_model, measure
    from upocr import UPOCRPipeline

    torch.set_num_threads(threads)
    model, info = load_run_model(folder / "run", "last")
    pipe = UPOCRPipeline(model, device="cpu")
    started = time.perf_counter()
    report = measure(pipe, count, 512, fonts=VARIED, backgrounds=VARIED)
    report["variant"] = name
    report["step"] = info["step"]
    report["train_wall_s"] = round(wall, 1)
    report["eval_s"] = round(time.perf_counter() - started, 1)
    checkpoint = torch.load(folder / "run" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    report["cpu_seconds"] = round(float(checkpoint.get("cpu_seconds", 0.0)), 1)
    report["parameters"] = model.num_parameters()
    report["img_size"] = model.img_size
    (folder / "metrics.json").write_text(json.dumps(report, indent=2))
    return report


def score_reference(out: Path, count: int, threads: int) -> dict:
    """The current default weights as they are (no further training)."""
    import torch

    from release_default_model import measure
    from upocr import UPOCRPipeline

    path = out / "current-default" / "metrics.json"
    if path.is_file():
        return json.loads(path.read_text())
    torch.set_num_threads(threads)
    pipe = UPOCRPipeline.from_pretrained(str(ROOT / "assets" / "upocr-tiny"), device="cpu")
    report = measure(pipe, count, 512, fonts=VARIED, backgrounds=VARIED)
    report.update(variant="current-default", step=0, cpu_seconds=0.0, img_size=pipe.model.img_size,
                  parameters=pipe.model.num_parameters())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return report


def _f(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(reports: list[dict]) -> str:
    head = ("| variant | steps | CPU s | seg fgIoU (P, R) | printed page fgIoU | removal PSNR: raw / kept to mask | "
            "removal text-pixel PSNR | tampering mIoU |")
    lines = [head, "|" + "---|" * 8]
    for r in reports:
        seg, rem, tam, page = r["text-segmentation"], r["text-removal"], r["tampered-text-detection"], r["printed_page"]
        lines.append(
            f"| {r['variant']} | {r['step']} | {r['cpu_seconds']:.0f} | {_f(seg['fgiou'], 3)} ({_f(seg['precision'], 2)}, "
            f"{_f(seg['recall'], 2)}) | {_f(page['fgiou'], 3)} | {_f(rem['output']['psnr'], 1)} / "
            f"{_f(rem['preserved']['psnr'], 1)} | {_f(rem['output']['text_psnr'], 1)} | {_f(tam['mean_iou'], 3)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs (outside the repository)")
    parser.add_argument("--budget", type=float, default=1200, help="CPU seconds of training per variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--count", type=int, default=16, help="held-out scenes per task")
    parser.add_argument("--variants", default=None, help="comma-separated subset (default: all, in order)")
    parser.add_argument("--table", action="store_true", help="print the table of finished variants and stop")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tools"))
    all_variants = variants()
    names = list(all_variants) if not args.variants else args.variants.split(",")
    reports = []
    if args.table:
        for name in ["current-default", *names]:
            path = args.out / name / "metrics.json"
            if path.is_file():
                reports.append(json.loads(path.read_text()))
        print(table(reports))
        return 0
    reports.append(score_reference(args.out, args.count, args.threads))
    print(table(reports), flush=True)
    for name in names:
        reports.append(run_variant(name, all_variants[name], args.out, args.budget, args.threads, args.count))
        print(table(reports), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
