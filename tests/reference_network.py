"""A literal, slow forward of the UPOCR network, written from docs/upocr-architecture.md alone.

It shares no code with ``upocr.modeling``: it pads, rolls and partitions feature maps, computes
attention logits explicitly, runs the four skip convolutions one by one and places the patch-split
groups pixel by pixel. It reads the weights from a state dict. The tests run it in float64 to
check that the fast model (cached window layouts, fused attention, folded skips, channels-last
convolutions) computes the same function, at sizes the official fixture does not cover.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _norm(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], 1e-5)


def _coords_table(ws, pretrained_ws, dtype):
    r = torch.arange(-(ws - 1), ws, dtype=dtype)
    table = torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1) / (pretrained_ws - 1) * 8
    return torch.sign(table) * torch.log2(table.abs() + 1) / math.log2(8)


def _relative_index(ws):
    ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    return (ys[:, None] - ys[None, :] + ws - 1) * (2 * ws - 1) + (xs[:, None] - xs[None, :] + ws - 1)


def _partition(grid, ws):
    b, h, w, c = grid.shape
    return grid.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)


def _unpartition(windows, ws, b, h, w):
    c = windows.shape[-1]
    return windows.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def _shift_mask(hp, wp, ws, shift, dtype):
    region = torch.zeros(1, hp, wp, 1, dtype=dtype)
    label = 0
    for rows in (slice(0, hp - ws), slice(hp - ws, hp - shift), slice(hp - shift, hp)):
        for cols in (slice(0, wp - ws), slice(wp - ws, wp - shift), slice(wp - shift, wp)):
            region[:, rows, cols] = label
            label += 1
    labels = _partition(region, ws).squeeze(-1)
    return (labels[:, None, :] != labels[:, :, None]).to(dtype) * -100.0


def _attention(x, sd, p, heads, ws, pretrained_ws, mask):
    bw, n, c = x.shape
    bias = torch.cat([sd[p + "q_bias"], torch.zeros_like(sd[p + "v_bias"]), sd[p + "v_bias"]])
    qkv = F.linear(x, sd[p + "qkv.weight"], bias).view(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2)
    logits = logits * torch.clamp(sd[p + "logit_scale"], max=math.log(100.0)).exp()
    coords = _coords_table(ws, pretrained_ws, torch.float32).to(x.dtype)  # a float32 buffer, as in checkpoints
    hidden = F.relu(F.linear(coords, sd[p + "cpb_mlp.0.weight"],
                             sd[p + "cpb_mlp.0.bias"]))
    table = F.linear(hidden, sd[p + "cpb_mlp.2.weight"]).reshape(-1, heads)
    logits = logits + 16 * torch.sigmoid(table[_relative_index(ws).flatten()].view(n, n, heads).permute(2, 0, 1))
    if mask is not None:
        nw = mask.shape[0]
        logits = (logits.view(bw // nw, nw, heads, n, n) + mask[None, :, None]).view(bw, heads, n, n)
    out = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
    return F.linear(out, sd[p + "proj.weight"], sd[p + "proj.bias"])


def _block(x, size, sd, p, heads, ws, pretrained_ws, shift):
    (h, w), (b, _, c) = size, x.shape
    hp, wp = math.ceil(h / ws) * ws, math.ceil(w / ws) * ws
    grid = F.pad(x.view(b, h, w, c), (0, 0, 0, wp - w, 0, hp - h))
    mask = None
    if shift:
        grid = torch.roll(grid, (-shift, -shift), (1, 2))
        mask = _shift_mask(hp, wp, ws, shift, x.dtype)
    grid = _unpartition(_attention(_partition(grid, ws), sd, p + "attn.", heads, ws, pretrained_ws, mask), ws, b, hp, wp)
    if shift:
        grid = torch.roll(grid, (shift, shift), (1, 2))
    x = x + _norm(grid[:, :h, :w].reshape(b, h * w, c), sd, p + "norm1")
    hidden = F.gelu(F.linear(x, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"]))
    return x + _norm(F.linear(hidden, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"]), sd, p + "norm2")


def _stage(x, size, sd, p, depth, heads, ws, pretrained_ws):
    for i in range(depth):
        x = _block(x, size, sd, f"{p}blocks.{i}.", heads, ws, pretrained_ws, ws // 2 if i % 2 else 0)
    return x


def _conv(x, sd, name, padding):
    return F.conv2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=padding)


def reference_forward(sd: dict, config: dict, images: torch.Tensor, task_index: int) -> list[torch.Tensor]:
    """Outputs ``[H/4, H/2, H]`` of the documented network for one task index."""
    x = F.conv2d(images, sd["encoder.patch_embed.proj.weight"], sd["encoder.patch_embed.proj.bias"], stride=4)
    b, _, h, w = x.shape
    x = _norm(x.flatten(2).transpose(1, 2), sd, "encoder.patch_embed.norm")
    enc_depths = config["encoder_depths"]
    features = []
    for i, depth in enumerate(enc_depths):
        p = f"encoder.stages.{i}."
        x = _stage(x, (h, w), sd, p, depth, config["encoder_num_heads"][i], config["encoder_window_size"],
                   config["encoder_pretrained_window_size"])
        features.append(_norm(x, sd, f"encoder.norms.{i}").transpose(1, 2).reshape(b, -1, h, w))
        if i < len(enc_depths) - 1:
            grid = x.view(b, h, w, -1)
            grid = F.pad(grid, (0, 0, 0, w % 2, 0, h % 2))
            grid = torch.cat([grid[:, 0::2, 0::2], grid[:, 1::2, 0::2], grid[:, 0::2, 1::2], grid[:, 1::2, 1::2]], -1)
            h, w = grid.shape[1:3]
            x = _norm(F.linear(grid.reshape(b, h * w, -1), sd[p + "resample.reduction.weight"]), sd, p + "resample.norm")
    x = F.linear(features[-1].flatten(2).transpose(1, 2), sd["bottleneck.weight"], sd["bottleneck.bias"])
    x = x + sd["task_prompt.weight"][task_index]
    dec_depths = config["decoder_depths"]
    first_output = len(dec_depths) - 3
    outputs = []
    for i, depth in enumerate(dec_depths):
        p = f"decoder.stages.{i}."
        x = _stage(x, (h, w), sd, p, depth, config["decoder_num_heads"][i], config["decoder_window_size"],
                   config["decoder_pretrained_window_size"])
        c = x.shape[-1]
        groups = _norm(F.linear(x.view(b, h, w, 4, c // 4), sd[p + "resample.proj.weight"]), sd, p + "resample.norm")
        up = groups.new_zeros(b, 2 * h, 2 * w, c // 2)
        for g in range(4):  # the inverse of the merge order: group g at sub-pixel (g % 2, g // 2)
            up[:, g % 2::2, g // 2::2] = groups[:, :, :, g]
        h, w = 2 * h, 2 * w
        x = up.reshape(b, h * w, c // 2)
        if i < len(enc_depths) - 1:
            s = features[len(enc_depths) - 2 - i]
            q = f"decoder.skips.{i}."
            s = _conv(_conv(_conv(_conv(s, sd, q + "0", 0), sd, q + "1", 1), sd, q + "2", 1), sd, q + "3", 0)
            x = x + s.flatten(2).transpose(1, 2)
        if i >= first_output:
            head = f"decoder.heads.{i - first_output}."
            grid = _norm(x, sd, head + "norm").transpose(1, 2).reshape(b, -1, h, w)
            outputs.append(_conv(grid, sd, head + "conv", 1))
    return outputs
