"""Shared fixtures: tiny models saved to temporary folders (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"

#: A very small configuration: same architecture, a few hundred thousand parameters.
MICRO_CONFIG = dict(
    embed_dim=8, encoder_depths=(2, 2, 2, 2), encoder_num_heads=(1, 1, 2, 2),
    encoder_window_size=8, encoder_pretrained_window_size=8,
    decoder_depths=(2, 2, 2, 2, 2), decoder_num_heads=(2, 2, 1, 1, 1),
    decoder_window_size=8, decoder_pretrained_window_size=8, img_size=128,
)


def make_micro_model(seed: int = 0, **overrides):
    from upocr import UPOCR

    torch.manual_seed(seed)
    model = UPOCR(**{**MICRO_CONFIG, **overrides})
    # non-trivial post-norms so every block changes the output
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                param.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="session")
def micro_model_dir(tmp_path_factory) -> Path:
    """A micro model written with ``save_pretrained`` (model.safetensors + config.json)."""
    folder = tmp_path_factory.mktemp("micro-model")
    make_micro_model().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def micro_pipeline(micro_model_dir):
    from upocr.pipeline import UPOCRPipeline

    return UPOCRPipeline.from_pretrained(micro_model_dir, device="cpu", mode="resize")


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    torch.set_num_threads(min(2, torch.get_num_threads()))
