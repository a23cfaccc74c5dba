"""SwinV2 building blocks shared by the UPOCR encoder and decoder.

Tensors inside a stage are token sequences ``(B, H*W, C)`` with the spatial size passed
alongside. Feature maps are zero-padded at the bottom/right to a multiple of the window, the
shift mask is built on the padded size, and the window is never shrunk for small maps.

Speed: in eval mode the continuous position bias (which depends only on the weights) is
computed once and cached; shift masks and window layouts are cached per map size, so moving
tokens into (padded, shifted) windows and back is one ``index_select`` each way; q and k are
normalised in one product that also folds the logit scale into q, and attention adds bias + mask
to the logits, through ``F.scaled_dot_product_attention`` or, for small float32 windows on the
CPU where it is faster, through two batched matmuls (:func:`explicit_attention_is_faster`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn

#: Value added to the logits between tokens of different regions in shifted windows.
SHIFT_MASK_VALUE = -100.0
#: The learnable logit scale is clamped at log(1 / 0.01) before exp.
LOGIT_SCALE_MAX = math.log(100.0)


def relative_coords_table(window_size: int, pretrained_window_size: int) -> torch.Tensor:
    """Log-spaced relative coordinates ``(1, 2w-1, 2w-1, 2)`` fed to the position-bias MLP."""
    coords = torch.arange(-(window_size - 1), window_size, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(coords, coords, indexing="ij")).permute(1, 2, 0).unsqueeze(0)
    table = table / (pretrained_window_size - 1 if pretrained_window_size > 1 else window_size - 1)
    table = table * 8
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)


def relative_position_index(window_size: int) -> torch.Tensor:
    """Index ``(w*w, w*w)`` into the flattened ``(2w-1)^2`` bias table for every token pair."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    ).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
    return rel[..., 0] * (2 * window_size - 1) + rel[..., 1]


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B * nW, w*w, C)``."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def shift_window_mask(height: int, width: int, window_size: int, shift: int, device) -> torch.Tensor:
    """Additive mask ``(nW, w*w, w*w)`` for shifted windows on a padded ``height x width`` map.

    Each row (column) is in band 0, 1 or 2: before the last window, in it before the shift, or
    in the shift; tokens of one window attend only to tokens of the same (row band, column band)
    region. Built from comparisons only, so it also traces with symbolic sizes (ONNX export)."""

    def bands(n: int) -> torch.Tensor:
        i = torch.arange(n, device=device)
        return (i >= n - window_size).float() + (i >= n - shift).float()

    region = (bands(height)[:, None] * 3 + bands(width)[None, :]).view(1, height, width, 1)
    windows = window_partition(region, window_size).squeeze(-1)
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)
    return torch.zeros_like(diff).masked_fill(diff != 0, SHIFT_MASK_VALUE)


def tracing() -> bool:
    """Whether the forward pass is being traced into a graph (``torch.export``/ONNX export, or
    ``torch.compile``): then no per-module caches, no in-place writes into views and no per-size
    index layouts, so the graph holds the whole computation, for any size."""
    return torch.compiler.is_exporting() or torch.compiler.is_compiling()


class WindowLayout(NamedTuple):
    """Where every token of an ``h x w`` map goes in the (padded, shifted) windows.

    ``gather``: ``(nW * w*w,)`` token index for each window slot, in window order; slots on the
    zero padding hold ``h * w``, the index of a zero row appended to the tokens.
    ``scatter``: ``(h * w,)`` window slot of each token (the inverse, padding dropped).
    One index_select each way replaces pad, roll, partition, reverse, roll and crop."""

    gather: torch.Tensor
    scatter: torch.Tensor
    padded: bool
    padded_size: tuple[int, int]


@torch.inference_mode(False)  # the indices are kept for backward: never inference tensors, even if built in one
def window_layout(height: int, width: int, window_size: int, shift: int, device) -> WindowLayout:
    hp, wp = -(-height // window_size) * window_size, -(-width // window_size) * window_size
    grid = torch.full((hp, wp), height * width, dtype=torch.long)
    grid[:height, :width] = torch.arange(height * width).view(height, width)
    if shift:
        grid = torch.roll(grid, shifts=(-shift, -shift), dims=(0, 1))
    gather = window_partition(grid.view(1, hp, wp, 1), window_size).reshape(-1)
    valid = gather < height * width
    scatter = torch.empty(height * width, dtype=torch.long)
    scatter[gather[valid]] = torch.arange(gather.numel())[valid]
    return WindowLayout(gather.to(device), scatter.to(device), (hp, wp) != (height, width), (hp, wp))


class EvalCache:
    """Mixin for modules that cache, in eval mode, values derived from their weights: the caches
    are dropped (:meth:`clear_cache`) whenever the mode or the weights may change: ``train()`` /
    ``eval()``, ``load_state_dict`` and ``.to()`` / ``.half()``. List it before ``nn.Module``."""

    def clear_cache(self) -> None:
        raise NotImplementedError

    def train(self, mode: bool = True):
        self.clear_cache()
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self.clear_cache()
        return super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, *args, **kwargs):
        self.clear_cache()
        return super()._apply(fn, *args, **kwargs)


class WindowAttention(EvalCache, nn.Module):
    """SwinV2 cosine window attention with a continuous (log-spaced) relative position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int, pretrained_window_size: int,
                 cpb_hidden: int = 512):
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((num_heads, 1, 1))))
        self.cpb_mlp = nn.Sequential(
            nn.Linear(2, cpb_hidden, bias=True), nn.ReLU(inplace=True), nn.Linear(cpb_hidden, num_heads, bias=False)
        )
        self.register_buffer(
            "relative_coords_table", relative_coords_table(window_size, pretrained_window_size), persistent=False
        )
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)
        self._bias_cache: torch.Tensor | None = None
        self._mask_cache: dict[tuple, torch.Tensor] = {}

    def position_bias(self) -> torch.Tensor:
        """``(heads, N, N)`` bias ``16 * sigmoid(cpb)`` in the weights' precision, also inside
        autocast (a small MLP; its cached value serves float32 and bfloat16 passes alike); cached
        in eval mode (weights fixed)."""
        use_cache = not self.training and not torch.is_grad_enabled() and not tracing()
        if use_cache and self._bias_cache is not None:
            return self._bias_cache
        n = self.window_size * self.window_size
        with torch.autocast(self.relative_coords_table.device.type, enabled=False):
            table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)
        bias = table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        bias = 16 * torch.sigmoid(bias)
        if use_cache:
            self._bias_cache = bias.contiguous()
        return bias

    def clear_cache(self) -> None:
        self._bias_cache = None
        self._mask_cache = {}

    def attention_mask(self, shift_mask: torch.Tensor | None, key: tuple | None = None,
                       dtype: torch.dtype | None = None) -> torch.Tensor:
        """Additive mask ``(1 or nW, heads, N, N)`` in ``dtype`` (default: the bias's): position
        bias plus the shifted-window mask.

        In eval mode without gradients it is cached under ``key`` (the padded map size) and the
        dtype, so a bfloat16 pass does not convert it again in every block."""
        use_cache = (not self.training and not torch.is_grad_enabled() and (shift_mask is None or key is not None)
                     and not tracing())
        key = (key, shift_mask is None, self.relative_coords_table.device, dtype)
        if use_cache and key in self._mask_cache:
            return self._mask_cache[key]
        bias = self.position_bias().unsqueeze(0)
        combined = bias if shift_mask is None else (bias + shift_mask.unsqueeze(1)).contiguous()
        if dtype is not None:
            combined = combined.to(dtype)
        if use_cache:
            if len(self._mask_cache) > 16:
                self._mask_cache.clear()
            self._mask_cache[key] = combined
        return combined

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, mask_key: tuple | None = None) -> torch.Tensor:
        """``x``: ``(B * nW, N, C)``; ``mask``: ``(nW, N, N)`` additive shift mask or None;
        ``mask_key``: a hashable name for ``mask`` (the padded map size) to cache bias + mask under."""
        bw, n, c = x.shape
        qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        if isinstance(self.qkv, nn.Linear):
            qkv = F.linear(x, self.qkv.weight, qkv_bias)
        else:  # a quantised projection (the int8 engine) keeps its weight packed
            qkv = self.qkv(x) + qkv_bias
        qkv = qkv.view(bw, n, 3, self.num_heads, c // self.num_heads)
        q, k = self._scaled_unit_qk(qkv)
        v = qkv[:, :, 2].transpose(1, 2)
        attn_mask = self.attention_mask(mask, mask_key, q.dtype)
        if explicit_attention_is_faster(q) or torch.compiler.is_exporting():  # one graph for every window size
            out = explicit_attention(q, k, v, attn_mask)
        else:
            if attn_mask.shape[0] not in (1, bw):  # one copy of the window masks per image of the batch
                attn_mask = attn_mask.repeat(bw // attn_mask.shape[0], 1, 1, 1)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=1.0)
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))

    def _scaled_unit_qk(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q and k of ``qkv`` ``(B', N, 3, heads, d)`` as unit vectors (``F.normalize``'s eps), q
        times the clamped logit scale, each ``(B', heads, N, d)`` in ``qkv``'s dtype. One product
        over q and k: the reciprocal norms (at least float32, also under autocast) take the scale
        first, so a bfloat16 q or k is rounded once; without autograd it writes both, contiguous,
        in the layout attention reads."""
        bw, n, _, heads, d = qkv.shape
        qk = qkv[:, :, :2]
        scale = torch.clamp(self.logit_scale, max=LOGIT_SCALE_MAX).exp().view(1, heads, 1)
        wide = torch.promote_types(qk.dtype, torch.float32)
        norm = torch.linalg.vector_norm(qk, dim=-1, keepdim=True, dtype=wide)
        factor = norm.clamp_min(1e-12).reciprocal() * torch.cat((scale, torch.ones_like(scale))).to(wide)
        if torch.is_grad_enabled() or tracing():
            qk = (qk * factor).to(qk.dtype).permute(2, 0, 3, 1, 4)
            return qk[0], qk[1]
        out = qk.new_empty((2, bw, heads, n, d))
        torch.mul(qk, factor, out=out.permute(1, 3, 0, 2, 4))
        return out[0], out[1]


def explicit_attention_is_faster(q: torch.Tensor) -> bool:
    """Whether :func:`explicit_attention` is the better kernel for ``q``: float32 on the CPU,
    8x8 windows (N <= 64), inference.

    Measured for the UPOCR window shapes (``benchmarks/attention_kernels.py``): the fused CPU
    kernel is built for long sequences and loses on 8x8 windows in float32; it wins on 16x16
    windows. In bfloat16 the explicit form is faster too, but it rounds the logits to bfloat16
    where the fused kernel keeps them in float32, which cost mask agreement with float32
    (IoU 0.988 -> 0.977 on an example). Training keeps the fused kernel: the explicit form
    holds the N x N weights for backward."""
    return (q.device.type == "cpu" and q.dtype == torch.float32 and q.shape[-2] <= 64
            and not torch.is_grad_enabled())


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T + mask) v`` with batched matmuls; ``attn_mask`` ``(1 or nW, heads, N, N)``
    is broadcast over the images of the batch instead of repeated."""
    heads, n = q.shape[1:3]
    attn = torch.matmul(q, k.transpose(-2, -1))
    if tracing():  # out of place: runtimes reuse buffers by shape
        attn = (attn.view(-1, attn_mask.shape[0], heads, n, n) + attn_mask).view(-1, heads, n, n)
    else:
        attn.view(-1, attn_mask.shape[0], heads, n, n).add_(attn_mask)
    return torch.matmul(attn.softmax(-1), v)


class SwinV2Block(nn.Module):
    """Res-post-norm block: ``x + DropPath(LN(attn(x)))``, then ``x + DropPath(LN(mlp(x)))``."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int, pretrained_window_size: int,
                 mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        self.window_size = window_size
        self.shift = shift
        self.attn = WindowAttention(dim, window_size, num_heads, pretrained_window_size)
        self.norm1 = nn.LayerNorm(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, layout: WindowLayout, mask: torch.Tensor | None) -> torch.Tensor:
        """``x``: ``(B, H*W, C)``; ``layout``: this block's window layout (shifted or not) for
        the map size; ``mask``: the stage's shift mask (used by shifted blocks only)."""
        b, _, c = x.shape
        n = self.window_size * self.window_size
        src = torch.cat((x, x.new_zeros(b, 1, c)), dim=1) if layout.padded else x
        windows = src.index_select(1, layout.gather).view(-1, n, c)
        shifted = bool(self.shift)
        y = self.attn(windows, mask if shifted else None, layout.padded_size if shifted else None)
        y = y.view(b, -1, c).index_select(1, layout.scatter)
        x = x + self.drop_path(self.norm1(y))
        return x + self.drop_path(self.norm2(self.mlp(x)))

    def forward_traceable(self, x: torch.Tensor, size: tuple, mask: torch.Tensor | None) -> torch.Tensor:
        """The same computation as :meth:`forward` written with pad, roll and reshape on the map
        size (which may be symbolic while exporting) instead of cached index layouts."""
        h, w = size
        b, _, c = x.shape
        ws = self.window_size
        hp, wp = (h + ws - 1) // ws * ws, (w + ws - 1) // ws * ws
        grid = F.pad(x.view(b, h, w, c), (0, 0, 0, wp - w, 0, hp - h))
        if self.shift:
            grid = torch.roll(grid, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(grid, ws), mask if self.shift else None)
        y = y.view(b, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        y = y[:, :h, :w].reshape(b, h * w, c)
        x = x + self.drop_path(self.norm1(y))
        return x + self.drop_path(self.norm2(self.mlp(x)))


class SwinV2Stage(nn.Module):
    """A run of blocks at one resolution (odd blocks shifted by half a window), then an optional
    resampling layer (:class:`PatchMerging` or :class:`PatchSplit`)."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, pretrained_window_size: int,
                 mlp_ratio: float = 4.0, drop_path: list[float] | None = None, resample: nn.Module | None = None):
        super().__init__()
        self.window_size = window_size
        self.shift = window_size // 2
        drop_path = drop_path or [0.0] * depth
        self.blocks = nn.ModuleList(
            SwinV2Block(dim, num_heads, window_size, 0 if i % 2 == 0 else self.shift, pretrained_window_size,
                        mlp_ratio, drop_path[i])
            for i in range(depth)
        )
        self.resample = resample
        self._layout_cache: dict[tuple, tuple] = {}

    def windows(self, size: tuple[int, int], device) -> tuple[WindowLayout, WindowLayout, torch.Tensor | None]:
        """Plain and shifted window layouts and the shift mask for a map size, cached per size."""
        key = (size, str(device))
        cached = self._layout_cache.get(key)
        if cached is None:
            ws = self.window_size
            plain = window_layout(*size, ws, 0, device)
            shifted = window_layout(*size, ws, self.shift, device)
            mask = shift_window_mask(*plain.padded_size, ws, self.shift, device) if len(self.blocks) > 1 else None
            if len(self._layout_cache) > 32:
                self._layout_cache.clear()
            cached = self._layout_cache[key] = (plain, shifted, mask)
        return cached

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tracing():  # sizes may be symbolic: no per-size caches
            ws = self.window_size
            hp, wp = (size[0] + ws - 1) // ws * ws, (size[1] + ws - 1) // ws * ws
            mask = shift_window_mask(hp, wp, ws, self.shift, x.device) if len(self.blocks) > 1 else None
            for block in self.blocks:
                x = block.forward_traceable(x, size, mask)
            return x
        plain, shifted, mask = self.windows(size, x.device)
        for block in self.blocks:
            x = block(x, shifted if block.shift else plain, mask)
        return x


class PatchEmbed(nn.Module):
    """Conv ``patch x patch`` stride ``patch`` then LayerNorm; pads H, W up to a multiple of ``patch``."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int = 4):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        h, w = x.shape[-2:]
        p = self.patch_size
        if h % p or w % p:
            x = F.pad(x, (0, (-w) % p, 0, (-h) % p))
        x = self.proj(x)
        size = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), size


class PatchMerging(nn.Module):
    """Halve the resolution: concat the 2x2 neighbours (order (0,0), (1,0), (0,1), (1,1)),
    Linear(4C -> 2C, no bias), LayerNorm(2C). Odd sizes are zero-padded."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        h, w = size
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        out_size = (x.shape[1], x.shape[2])
        return self.norm(self.reduction(x.view(b, -1, 4 * c))), out_size


class PatchSplit(nn.Module):
    """Double the resolution, the inverse of :class:`PatchMerging`: the C channels are 4 groups
    of C/4 laid out as 2x2 sub-pixels, then Linear(C/4 -> C/2, no bias), LayerNorm(C/2)."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim // 4, dim // 2, bias=False)
        self.norm = nn.LayerNorm(dim // 2)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        h, w = size
        b, _, c = x.shape
        x = self.norm(self.proj(x.view(b, h, w, 4, c // 4)))
        # group g sits at sub-pixel (row, col) = (g % 2, g // 2): groups [0, 2, 1, 3] as a 2x2 grid
        x = x.view(b, h, w, 2, 2, -1).permute(0, 1, 4, 2, 3, 5)
        return x.reshape(b, 4 * h * w, -1), (2 * h, 2 * w)
