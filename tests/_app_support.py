"""Shared by the app tests: a tiny saved model and a launched app (no GPU, no network)."""

from __future__ import annotations

import contextlib
import io
import socket
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "assets" / "examples"
ARTIFACTS = REPO / "test-artifacts"


def save_tiny_model(folder: Path) -> Path:
    """A tiny random UPOCR whose outputs straddle the thresholds (so masks are neither empty nor
    full and moving the threshold changes them). Random weights: only for testing plumbing."""
    import torch

    from upocr import UPOCR

    torch.manual_seed(0)
    model = UPOCR.from_preset("tiny", embed_dim=8, encoder_num_heads=(1, 1, 2, 2),
                              decoder_num_heads=(2, 2, 1, 1, 1), img_size=128)
    with torch.no_grad():
        head = model.decoder.heads[-1].conv
        head.weight.mul_(4)
        head.bias.fill_(0.3)
    model.save_pretrained(folder)
    return folder


def load_pipeline(folder: Path):
    from upocr.pipeline import UPOCRPipeline

    return UPOCRPipeline.from_pretrained(str(folder), device="cpu")


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(demo) -> str:
    from demo import launch as launch_demo

    _, url, _ = launch_demo(demo, host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True)
    return url


def open_png(source) -> Image.Image:
    """A PNG from a path or bytes, fully loaded."""
    data = Path(source).read_bytes() if not isinstance(source, (bytes, bytearray)) else bytes(source)
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def values(image: Image.Image) -> set[int]:
    return set(np.unique(np.asarray(image)).tolist())
