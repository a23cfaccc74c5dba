"""Shared test helpers, imported by test modules as ``from helpers import ...``.

``tests/`` is on ``sys.path`` (``pythonpath`` in pyproject.toml), so this module, ``bad_inputs``,
``reference_network`` and ``_app_support`` import the same way from every subfolder. Fixtures stay
in ``conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import torch

#: This folder (``tests/``) and the repository root, whatever subfolder a test lives in.
TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

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
