"""Mirrored SwinV2 decoder: stages with patch split, convolutional skips, three output heads."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .swinv2 import PatchSplit, SwinV2Stage


def skip_branch(dim: int) -> nn.Sequential:
    """Conv1x1(C->C) -> Conv3x3(C->2C) -> Conv3x3(2C->2C) -> Conv1x1(2C->C), no activations."""
    return nn.Sequential(
        nn.Conv2d(dim, dim, 1),
        nn.Conv2d(dim, 2 * dim, 3, padding=1),
        nn.Conv2d(2 * dim, 2 * dim, 3, padding=1),
        nn.Conv2d(2 * dim, dim, 1),
    )


class OutputHead(nn.Module):
    """LayerNorm on tokens, then Conv3x3 to the output channels (no activation)."""

    def __init__(self, dim: int, out_chans: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv2d(dim, out_chans, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        return self.conv(self.norm(x).view(b, *size, c).permute(0, 3, 1, 2).contiguous())


class SwinV2Decoder(nn.Module):
    """Bottleneck tokens at the lowest resolution -> outputs at H/4, H/2 and H.

    Stage ``i`` runs its blocks, then a :class:`PatchSplit` doubles the resolution and halves the
    channels. After the split of stage ``i < len(skips)`` the encoder map of stage
    ``n_enc - 2 - i`` is added through a conv skip branch. The last three stages each feed an
    :class:`OutputHead`.
    """

    def __init__(self, bottleneck_dim: int, depths: Sequence[int], num_heads: Sequence[int], window_size: int,
                 pretrained_window_size: int, mlp_ratio: float, drop_path: Sequence[float], num_skips: int,
                 out_chans: int = 3, num_outputs: int = 3):
        super().__init__()
        self.dims = [bottleneck_dim // 2**i for i in range(len(depths))]
        self.stages = nn.ModuleList()
        offset = 0
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            self.stages.append(
                SwinV2Stage(self.dims[i], depth, heads, window_size, pretrained_window_size, mlp_ratio,
                            list(drop_path[offset : offset + depth]), resample=PatchSplit(self.dims[i]))
            )
            offset += depth
        self.skips = nn.ModuleList(skip_branch(self.dims[i] // 2) for i in range(num_skips))
        self.first_output_stage = len(depths) - num_outputs
        self.heads = nn.ModuleList(
            OutputHead(self.dims[i] // 2, out_chans) for i in range(self.first_output_stage, len(depths))
        )

    def skip_tokens(self, skips: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The skip branches on the encoder maps (deepest first), as token sequences. They do not
        depend on the task, so several tasks can share them."""
        return [branch(f).flatten(2).transpose(1, 2) for branch, f in zip(self.skips, skips)]

    def forward(self, x: torch.Tensor, size: tuple[int, int], skip_tokens: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``x``: ``(B, h*w, C)`` bottleneck tokens; ``skip_tokens``: from :meth:`skip_tokens`."""
        outputs = []
        for i, stage in enumerate(self.stages):
            x = stage(x, size)
            x, size = stage.resample(x, size)
            if i < len(skip_tokens):
                x = x + skip_tokens[i]
            if i >= self.first_output_stage:
                outputs.append(self.heads[i - self.first_output_stage](x, size))
        return outputs
