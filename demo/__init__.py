"""UPOCR Studio: the Gradio app for UPOCR (text removal, text segmentation, tampered text detection)."""

from .ui import NO_WEIGHTS_MESSAGE, build_demo, launch

__all__ = ["NO_WEIGHTS_MESSAGE", "build_demo", "launch"]
