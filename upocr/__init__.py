"""UPOCR: a unified pixel-level OCR interface (text removal, text segmentation, tampered text detection)."""

from .modeling import PRESETS, UPOCR
from .results import TamperingResult, TextRemovalResult, TextSegmentationResult
from .tasks import TAMPERED_TEXT_DETECTION, TASKS, TEXT_REMOVAL, TEXT_SEGMENTATION

__version__ = "0.1.0"


def __getattr__(name):
    if name == "UPOCRPipeline":
        from .pipeline import UPOCRPipeline

        return UPOCRPipeline
    raise AttributeError(name)


__all__ = [
    "PRESETS",
    "TASKS",
    "TAMPERED_TEXT_DETECTION",
    "TEXT_REMOVAL",
    "TEXT_SEGMENTATION",
    "TamperingResult",
    "TextRemovalResult",
    "TextSegmentationResult",
    "UPOCR",
    "UPOCRPipeline",
]
