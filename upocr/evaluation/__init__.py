"""Metrics and the evaluation loop for the three UPOCR tasks."""

from .evaluate import evaluate, ground_truth
from .metrics import RemovalMetrics, SegmentationMetrics, TamperingMetrics, ms_ssim, removal_scores

__all__ = [
    "RemovalMetrics",
    "SegmentationMetrics",
    "TamperingMetrics",
    "evaluate",
    "ground_truth",
    "ms_ssim",
    "removal_scores",
]
