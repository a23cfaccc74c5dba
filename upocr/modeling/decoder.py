"""Mirrored SwinV2 decoder: stages with patch split, convolutional skips, three output heads."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .swinv2 import EvalCache, PatchSplit, SwinV2Stage, tracing


class SkipBranch(EvalCache, nn.Sequential):
    """Conv1x1(C->C) -> Conv3x3(C->2C) -> Conv3x3(2C->2C) -> Conv1x1(2C->C), no activations.

    In eval mode without gradients the four convolutions run as two: the first 1x1 is folded
    into the first 3x3 and the last 1x1 into the second 3x3 (about 37 % fewer FLOPs). The fold
    is exact in real arithmetic everywhere, borders included: the zero padding of the first
    3x3 sees zeros where the unfolded branch sees the 1x1's bias as well, which
    :meth:`_border_fix` takes back on the one-pixel frame. The fold is cached (:class:`EvalCache`).
    """

    def __init__(self, dim: int):
        super().__init__(
            nn.Conv2d(dim, dim, 1),
            nn.Conv2d(dim, 2 * dim, 3, padding=1),
            nn.Conv2d(2 * dim, 2 * dim, 3, padding=1),
            nn.Conv2d(2 * dim, dim, 1),
        )
        self._folded: tuple[torch.Tensor, ...] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            return super().forward(x)
        folded = self._folded
        if folded is None:
            folded = self._fold()
            if not tracing():  # never keep traced values on the module
                self._folded = folded
        w_a, b_a, tap_bias, w_b, b_b = folded
        y = F.conv2d(x, w_a, b_a, padding=1)
        self._border_fix(y, tap_bias)
        return F.conv2d(y, w_b, b_b, padding=1)

    @torch.no_grad()
    def _fold(self) -> tuple[torch.Tensor, ...]:
        """The folded weights, in the weights' own precision even when built inside autocast
        (the fold is cached and must serve float32 passes as well)."""
        with torch.autocast(self[0].weight.device.type, enabled=False):
            return self._fold_weights()

    def _fold_weights(self) -> tuple[torch.Tensor, ...]:
        c1, c2, c3, c4 = self
        w1 = c1.weight[:, :, 0, 0]
        w_a = torch.einsum("oikl,ij->ojkl", c2.weight, w1)
        tap_bias = torch.einsum("oikl,i->okl", c2.weight, c1.bias)  # what each tap adds from c1's bias
        b_a = c2.bias + tap_bias.sum((1, 2))
        w4 = c4.weight[:, :, 0, 0]
        w_b = torch.einsum("ij,jokl->iokl", w4, c3.weight)
        b_b = w4 @ c3.bias + c4.bias
        return w_a.contiguous(), b_a, tap_bias, w_b.contiguous(), b_b

    @staticmethod
    def _border_fix(y: torch.Tensor, tap_bias: torch.Tensor) -> None:
        """Remove, on the frame, the bias of the taps that fall on the zero padding
        (rows and columns, then the corners counted twice back in)."""
        top, bottom = tap_bias[:, 0, :].sum(1), tap_bias[:, 2, :].sum(1)
        left, right = tap_bias[:, :, 0].sum(1), tap_bias[:, :, 2].sum(1)
        y[:, :, 0, :] -= top[:, None]
        y[:, :, -1, :] -= bottom[:, None]
        y[:, :, :, 0] -= left[:, None]
        y[:, :, :, -1] -= right[:, None]
        y[:, :, 0, 0] += tap_bias[:, 0, 0]
        y[:, :, 0, -1] += tap_bias[:, 0, 2]
        y[:, :, -1, 0] += tap_bias[:, 2, 0]
        y[:, :, -1, -1] += tap_bias[:, 2, 2]

    def clear_cache(self) -> None:
        self._folded = None


class OutputHead(nn.Module):
    """LayerNorm on tokens, then Conv3x3 to the output channels (no activation)."""

    def __init__(self, dim: int, out_chans: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv2d(dim, out_chans, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        # the convolution reads the channels-last view directly (several times faster than NCHW)
        return self.conv(self.norm(x).view(b, *size, c).permute(0, 3, 1, 2)).contiguous()


class DetailCapture(nn.Module):
    """Light convolutions on the input image that keep what the 4x4 patch embedding discards.

    ``channels`` lists the feature widths from the finest scale up: ``(c_full, c_half)`` gives
    features at H (two 3x3 convolutions) and at H/2 (a strided 3x3 then a 3x3), after the idea
    of ViTMatte's detail capture module. :meth:`forward` returns them coarsest first, in the
    order the decoder's last output heads run.
    """

    def __init__(self, in_chans: int, channels: Sequence[int]):
        super().__init__()
        self.stages = nn.ModuleList()
        prev = in_chans
        for i, ch in enumerate(channels):
            self.stages.append(nn.Sequential(
                nn.Conv2d(prev, ch, 3, stride=1 if i == 0 else 2, padding=1), nn.GELU(),
                nn.Conv2d(ch, ch, 3, padding=1), nn.GELU(),
            ))
            prev = ch
        self.channels = list(channels)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        # channels-last throughout, like the decoder's token maps they are concatenated with: on
        # CPU these convolutions run several times faster than in NCHW
        features, x = [], images.contiguous(memory_format=torch.channels_last)
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features[::-1]


class DetailFusionHead(nn.Module):
    """An output head that also sees the detail features of its scale: LayerNorm on tokens,
    concatenated with the detail map, Conv3x3 -> GELU -> Conv3x3 to the output channels."""

    def __init__(self, dim: int, detail_dim: int, out_chans: int):
        super().__init__()
        hidden = max(dim, detail_dim)
        self.norm = nn.LayerNorm(dim)
        self.fuse = nn.Conv2d(dim + detail_dim, hidden, 3, padding=1)
        self.act = nn.GELU()
        self.conv = nn.Conv2d(hidden, out_chans, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int], detail: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        tokens = self.norm(x).view(b, *size, c).permute(0, 3, 1, 2)
        return self.conv(self.act(self.fuse(torch.cat([tokens, detail], dim=1)))).contiguous()


class SwinV2Decoder(nn.Module):
    """Bottleneck tokens at the lowest resolution -> outputs at H/4, H/2 and H.

    Stage ``i`` runs its blocks, then a :class:`PatchSplit` doubles the resolution and halves the
    channels. After the split of stage ``i < len(skips)`` the encoder map of stage
    ``n_enc - 2 - i`` is added through a conv skip branch. The last three stages each feed an
    :class:`OutputHead`; with ``detail_channels`` (finest first) the last ``len(detail_channels)``
    heads are :class:`DetailFusionHead` s fed by a :class:`DetailCapture` of the input image.
    """

    def __init__(self, bottleneck_dim: int, depths: Sequence[int], num_heads: Sequence[int], window_size: int,
                 pretrained_window_size: int, mlp_ratio: float, drop_path: Sequence[float], num_skips: int,
                 out_chans: int = 3, num_outputs: int = 3, detail_channels: Sequence[int] = ()):
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
        self.skips = nn.ModuleList(SkipBranch(self.dims[i] // 2) for i in range(num_skips))
        self.first_output_stage = len(depths) - num_outputs
        detail_channels = list(detail_channels or ())
        if len(detail_channels) > num_outputs:
            raise ValueError(f"detail_channels has {len(detail_channels)} entries; the decoder has {num_outputs} outputs")
        # detail widths per output head, coarsest head first (None: a plain head)
        head_details = [None] * (num_outputs - len(detail_channels)) + detail_channels[::-1]
        self.heads = nn.ModuleList(
            OutputHead(self.dims[i] // 2, out_chans) if d is None else DetailFusionHead(self.dims[i] // 2, d, out_chans)
            for i, d in zip(range(self.first_output_stage, len(depths)), head_details)
        )
        self.num_plain_heads = num_outputs - len(detail_channels)

    def skip_tokens(self, skips: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The skip branches on the encoder maps (deepest first), as token sequences. They do not
        depend on the task, so several tasks can share them."""
        tokens = []
        for branch, f in zip(self.skips, skips):
            b, c, h, w = f.shape
            tokens.append(branch(f).permute(0, 2, 3, 1).reshape(b, h * w, c))  # a view for channels-last maps
        return tokens

    def forward(self, x: torch.Tensor, size: tuple[int, int], skip_tokens: Sequence[torch.Tensor],
                details: Sequence[torch.Tensor] = ()) -> list[torch.Tensor]:
        """``x``: ``(B, h*w, C)`` bottleneck tokens; ``skip_tokens``: from :meth:`skip_tokens`;
        ``details``: the :class:`DetailCapture` maps (coarsest first) when the decoder has detail heads."""
        outputs = []
        for i, stage in enumerate(self.stages):
            x = stage(x, size)
            x, size = stage.resample(x, size)
            if i < len(skip_tokens):
                x = x + skip_tokens[i]
            if i >= self.first_output_stage:
                k = i - self.first_output_stage
                head = self.heads[k]
                if k < self.num_plain_heads:
                    outputs.append(head(x, size))
                else:
                    outputs.append(head(x, size, details[k - self.num_plain_heads]))
        return outputs
