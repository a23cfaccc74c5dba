"""A weights-only, half-precision snapshot of a training run, for keeping its progress in git.

    python tools/snapshot_run.py --run ~/.cache/upocr/runs/default-v2 --out runs/default-v2-snapshot

Writes ``model.safetensors`` (float16), ``config.json`` and ``snapshot.json`` (step, CPU seconds,
the run's config) into ``--out``, replacing it in one rename. The snapshot loads with
``UPOCR.from_pretrained`` (in float32) and can seed a new run (``init_from``) if the run's own
checkpoint, kept outside the repository, is lost; it holds no optimiser state, so it does not
resume a run exactly.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


def snapshot(run: Path, out: Path) -> dict:
    checkpoint = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in checkpoint["model"].items()}
    info = {"step": checkpoint["step"], "cpu_seconds": checkpoint.get("cpu_seconds"), "elapsed_s": checkpoint.get("elapsed"),
            "config": json.loads(checkpoint["config"])}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file(state, str(staging / "model.safetensors"), metadata={"format": "pt", "dtype": "float16"})
        (staging / "config.json").write_text(json.dumps(checkpoint["model_config"], indent=2, sort_keys=True))
        (staging / "snapshot.json").write_text(json.dumps(info, indent=2))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="the run's output folder (with checkpoints/last.pt)")
    parser.add_argument("--out", type=Path, required=True, help="the snapshot folder to write")
    args = parser.parse_args(argv)
    info = snapshot(args.run.expanduser(), args.out)
    print(f"snapshot of step {info['step']} written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
