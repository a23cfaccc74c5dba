"""Shared fixtures: tiny models saved to temporary folders (nothing is downloaded).

Helpers that test modules import live in ``helpers.py`` (``from helpers import ...``), not here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers import make_micro_model

# Tests compare outputs with float32 references: they run the fp32 engine unless a test asks for
# another (the engine tests do), and calibrations go to a folder of the test run, not the user's cache.
os.environ.setdefault("UPOCR_ENGINE", "fp32")


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
