"""UPOCR: a unified pixel-level OCR interface (text removal, text segmentation, tampered text detection).

Heavy modules (torch, the network, the pipeline) load on first use, so ``upocr.io``,
``upocr.labeling`` stay light.
"""

from importlib import import_module

from .tasks import TAMPERED_TEXT_DETECTION, TASKS, TEXT_REMOVAL, TEXT_SEGMENTATION

__version__ = "0.1.0"

_LAZY = {
    "UPOCR": ".modeling",
    "PRESETS": ".modeling",
    "UPOCRPipeline": ".pipeline",
    "TextRemovalResult": ".results",
    "TextSegmentationResult": ".results",
    "TamperingResult": ".results",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'upocr' has no attribute {name!r}")


__all__ = ["TASKS", "TAMPERED_TEXT_DETECTION", "TEXT_REMOVAL", "TEXT_SEGMENTATION", *_LAZY]
