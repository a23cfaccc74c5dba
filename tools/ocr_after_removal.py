"""How much text a real OCR detector still finds after text removal.

    pip install rapidocr-onnxruntime          # a separate environment is fine: this reads PNGs only
    upocr synth --task text-removal --split heldout --seed 2 --count 24 --fonts debian default \
        --backgrounds debian default --out /tmp/scenes
    upocr predict --task text-removal /tmp/scenes/images -o /tmp/removed
    python tools/ocr_after_removal.py /tmp/scenes/images /tmp/removed

RapidOCR's text detector (PP-OCR's DB detector, run by ONNX Runtime; its weights ship inside the
wheel) finds the text boxes of each original image, then of the image after removal (the same
relative path under REMOVED). An original box counts as found again when a box found after
removal overlaps it with IoU >= ``--iou`` (default 0.3). Prints one line per image and the total:
the share of the original boxes found again (lower is better; 0 means no readable text is left).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def boxes(engine, path: Path) -> np.ndarray:
    """Axis-aligned boxes ``(N, 4)`` x0, y0, x1, y1 of the text the detector finds in ``path``."""
    found, _ = engine(np.asarray(Image.open(path).convert("RGB"))[..., ::-1], use_det=True, use_cls=False,
                      use_rec=False)
    quads = [np.asarray(q, dtype=np.float64).reshape(-1, 2) for q in (found or [])]
    return np.array([[q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max()] for q in quads]).reshape(-1, 4)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a (N, 4)`` and ``b (M, 4)``."""
    x0, y0 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x1, y1 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("originals", type=Path, help="folder of the images before removal")
    parser.add_argument("removed", type=Path, help="folder of the images after removal (same relative names)")
    parser.add_argument("--iou", type=float, default=0.3, help="overlap at which a box counts as found again")
    args = parser.parse_args(argv)
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError:
        print("error: this measurement needs RapidOCR: pip install rapidocr-onnxruntime", file=sys.stderr)
        return 2
    engine = RapidOCR()
    total = again = 0
    for path in sorted(p for p in args.originals.rglob("*") if p.suffix.lower() in SUFFIXES):
        relative = path.relative_to(args.originals)
        after = next((c for c in (args.removed / relative, (args.removed / relative).with_suffix(".png"))
                      if c.is_file()), None)
        if after is None:
            print(f"{relative}: no image after removal in {args.removed}; skipped", file=sys.stderr)
            continue
        before_boxes, after_boxes = boxes(engine, path), boxes(engine, after)
        kept = int((iou(before_boxes, after_boxes).max(axis=1) >= args.iou).sum()) if len(after_boxes) else 0
        total, again = total + len(before_boxes), again + kept
        print(f"{relative}: {len(before_boxes)} boxes before, {kept} found again")
    share = again / total if total else 0.0
    print(f"found again: {again} of {total} original text boxes ({100 * share:.1f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
