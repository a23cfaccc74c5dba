"""SwinV2 encoder: patch embedding, four stages with patch merging, a LayerNorm per stage output."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .swinv2 import PatchEmbed, PatchMerging, SwinV2Stage


class SwinV2Encoder(nn.Module):
    """Image ``(B, 3, H, W)`` -> one feature map per stage, ``(B, C_i, H / 4 / 2^i, W / 4 / 2^i)``.

    Under autocast, the patch embedding runs in float32: it reads the pixels, whose detail the
    removal output and the mask edges are rebuilt from (in bfloat16, a value keeps 8 significant
    bits, and the bundled model's removal drifted by 1.4/255 from float32's), and it is a tiny
    share of the work."""

    def __init__(self, in_chans: int, embed_dim: int, depths: Sequence[int], num_heads: Sequence[int],
                 window_size: int, pretrained_window_size: int, mlp_ratio: float, drop_path: Sequence[float],
                 patch_size: int = 4):
        super().__init__()
        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size)
        self.dims = [embed_dim * 2**i for i in range(len(depths))]
        self.stages = nn.ModuleList()
        offset = 0
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            last = i == len(depths) - 1
            self.stages.append(
                SwinV2Stage(self.dims[i], depth, heads, window_size, pretrained_window_size, mlp_ratio,
                            list(drop_path[offset : offset + depth]),
                            resample=None if last else PatchMerging(self.dims[i]))
            )
            offset += depth
        self.norms = nn.ModuleList(nn.LayerNorm(d) for d in self.dims)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        device = images.device.type
        if torch.is_autocast_enabled(device):
            with torch.autocast(device, enabled=False):
                x, size = self.patch_embed(images.float())
        else:
            x, size = self.patch_embed(images)
        features = []
        for stage, norm in zip(self.stages, self.norms):
            x = stage(x, size)
            b, _, c = x.shape
            # NCHW in shape, channels-last in memory: a free view, and faster convolutions in the skips
            features.append(norm(x).view(b, *size, c).permute(0, 3, 1, 2))
            if stage.resample is not None:
                x, size = stage.resample(x, size)
        return features
