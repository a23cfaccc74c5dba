"""The UPOCR network: SwinV2 encoder, task-prompted bottleneck, SwinV2 decoder."""

from .upocr import PRESETS, SIZE_MULTIPLE, UPOCR

__all__ = ["PRESETS", "SIZE_MULTIPLE", "UPOCR"]
