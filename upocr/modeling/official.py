"""Reading official UPOCR and ViTEraser checkpoints: the configuration from the tensor shapes and
the weights under this package's key names (the model builds itself from them, see
:meth:`upocr.UPOCR.from_official_checkpoint`; :mod:`upocr.convert` writes converted folders).

Accepted files: the official training/eval checkpoint (``{"model": state_dict, "args": Namespace,
...}``) or a bare state dict, with or without a ``module.`` prefix and ``vgg16.*`` loss keys; and
ViTEraser checkpoints (``pixel_embed.*``, ``decoder.erase_conv.*``, no task prompt). The file is
read with ``torch.load(weights_only=True)``, allowing only ``argparse.Namespace`` besides tensors
and plain containers: anything else in the pickle is refused, never executed.
"""

from __future__ import annotations

import argparse
import math
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ..tasks import OFFICIAL_TASK_ORDER, TEXT_REMOVAL
from .swinv2 import relative_coords_table, relative_position_index


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or converted; the message names the file."""


def load_checkpoint_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read an official checkpoint safely: ``(state_dict, official_args)``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).split("\n")[0]
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects other than tensors and plain data "
            f"(only argparse.Namespace is allowed), so it was not unpickled. Detail: {reason}"
        ) from None
    except Exception as error:  # zip/format errors from torch
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    args = obj.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else dict(args) if isinstance(args, dict) else {}
    for wrapper in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{path}: no tensors found in the checkpoint")
    return state, args


def _strip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop ``module.`` prefixes and loss-only ``vgg16.*`` keys; rename ViTEraser keys."""
    out = {}
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module.") :]
        if key.startswith("vgg16."):
            continue
        key = re.sub(r"^pixel_embed\.", "proj.", key)
        key = key.replace("decoder.erase_conv.", "decoder.output_conv.")
        out[key] = value
    return out


def _count_blocks(state: dict, prefix: str) -> list[int]:
    depths: dict[int, int] = {}
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.blocks\.(\d+)\.")
    for key in state:
        match = pattern.match(key)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            depths[stage] = max(depths.get(stage, 0), block + 1)
    return [depths[i] for i in range(len(depths))]


def _window_sizes(state: dict, prefix: str, fallback_ws: int | None, fallback_pws: int | None) -> tuple[int, int]:
    """Window size from the stored index buffer, pretrained window from the stored coords table."""
    index = state.get(f"{prefix}0.blocks.0.attn.relative_position_index")
    table = state.get(f"{prefix}0.blocks.0.attn.relative_coords_table")
    ws = int(math.isqrt(index.shape[0])) if index is not None else fallback_ws
    if ws is None:
        raise CheckpointError("the window size cannot be inferred (no position buffers); pass it as an override")
    pws = fallback_pws
    if table is not None and ws > 1:
        edge = float(table[0, -1, ws - 1, 0])  # coordinate ws-1 normalised by pws-1
        scaled = 2 ** (edge * math.log2(8)) - 1  # = 8 * (ws - 1) / (pws - 1)
        pws = int(round(8 * (ws - 1) / scaled + 1))
    return ws, pws or ws


def infer_config(state: dict[str, torch.Tensor], args: dict[str, Any] | None = None) -> dict[str, Any]:
    """UPOCR constructor arguments from the tensor shapes (official ``args`` as fallbacks)."""
    args = args or {}
    enc, dec = "encoder.backbone.layers.", "decoder.layers."
    try:
        patch = state["encoder.backbone.patch_embed.proj.weight"]
    except KeyError:
        raise CheckpointError("no encoder.backbone.patch_embed.proj.weight: not a UPOCR/ViTEraser checkpoint") from None
    enc_depths, dec_depths = _count_blocks(state, enc), _count_blocks(state, dec)
    if not enc_depths or not dec_depths:
        raise CheckpointError("no encoder or decoder blocks found: not a UPOCR/ViTEraser checkpoint")
    embed_dim = patch.shape[0]
    enc_ws, enc_pws = _window_sizes(state, enc, args.get("swin_enc_window_size"), args.get("swin_enc_pretrained_ws"))
    dec_ws, dec_pws = _window_sizes(state, dec, args.get("swin_dec_window_size"), args.get("swin_dec_pretrained_ws"))
    fc1 = state[f"{enc}0.blocks.0.mlp.fc1.weight"]
    prompt = state.get("task_prompt.task_embedding.weight")
    if prompt is not None and prompt.shape[0] != len(OFFICIAL_TASK_ORDER):
        raise CheckpointError(f"expected {len(OFFICIAL_TASK_ORDER)} task prompts, found {prompt.shape[0]}")
    return dict(
        embed_dim=int(embed_dim),
        encoder_depths=enc_depths,
        encoder_num_heads=[int(state[f"{enc}{i}.blocks.0.attn.logit_scale"].shape[0]) for i in range(len(enc_depths))],
        encoder_window_size=enc_ws,
        encoder_pretrained_window_size=enc_pws,
        decoder_depths=dec_depths,
        decoder_num_heads=[int(state[f"{dec}{i}.blocks.0.attn.logit_scale"].shape[0]) for i in range(len(dec_depths))],
        decoder_window_size=dec_ws,
        decoder_pretrained_window_size=dec_pws,
        mlp_ratio=fc1.shape[0] / fc1.shape[1],
        patch_size=int(patch.shape[-1]),
        in_chans=int(patch.shape[1]),
        out_chans=int(state["decoder.output_conv.weight"].shape[0]),
        tasks=list(OFFICIAL_TASK_ORDER) if prompt is not None else [TEXT_REMOVAL],
        task_prompt=prompt is not None,
    )


_RENAMES = [
    (r"^encoder\.backbone\.patch_embed\.", "encoder.patch_embed."),
    (r"^encoder\.backbone\.layers\.(\d+)\.downsample\.", r"encoder.stages.\1.resample."),
    (r"^encoder\.backbone\.layers\.(\d+)\.blocks\.", r"encoder.stages.\1.blocks."),
    (r"^encoder\.backbone\.norm(\d+)\.", r"encoder.norms.\1."),
    (r"^proj\.", "bottleneck."),
    (r"^task_prompt\.task_embedding\.", "task_prompt."),
    (r"^decoder\.layers\.(\d+)\.upsample\.upsample\.", r"decoder.stages.\1.resample.proj."),
    (r"^decoder\.layers\.(\d+)\.upsample\.norm\.", r"decoder.stages.\1.resample.norm."),
    (r"^decoder\.layers\.(\d+)\.blocks\.", r"decoder.stages.\1.blocks."),
    (r"^decoder\.lateral_connection_list\.", "decoder.skips."),
]


def checkpoint_filter_fn(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Official key names -> this package's, checking the fixed position buffers on the way."""
    state = _strip(state)
    n_dec = len(config["decoder_depths"])
    first_head = n_dec - 3
    heads = {f"decoder.intermediate_convs.{i}.": f"decoder.heads.{i}.conv." for i in range(2)}
    heads["decoder.output_conv."] = "decoder.heads.2.conv."
    for h in range(3):
        heads[f"decoder.norm{first_head + h}."] = f"decoder.heads.{h}.norm."
    windows = {
        "encoder": (config["encoder_window_size"], config["encoder_pretrained_window_size"]),
        "decoder": (config["decoder_window_size"], config["decoder_pretrained_window_size"]),
    }
    out = {}
    for key, value in state.items():
        if key.endswith(("attn.relative_coords_table", "attn.relative_position_index")):
            ws, pws = windows[key.split(".")[0]]
            expected = (relative_coords_table(ws, pws) if key.endswith("table") else relative_position_index(ws))
            if value.shape != expected.shape or not torch.allclose(value.to(expected.dtype), expected, atol=1e-5):
                raise CheckpointError(f"{key} does not match window {ws} (pretrained {pws})")
            continue
        new = key
        for prefix, replacement in heads.items():
            if key.startswith(prefix):
                new = replacement + key[len(prefix) :]
                break
        else:
            for pattern, replacement in _RENAMES:
                new, n = re.subn(pattern, replacement, key)
                if n:
                    break
        out[new] = value.float() if value.is_floating_point() else value
    return out


def read_official_checkpoint(path: str | Path, *, img_size: int = 512,
                             **overrides) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config, state_dict)`` of an official UPOCR or ViTEraser checkpoint file: the
    constructor arguments inferred from the tensor shapes (``overrides`` on top) and the weights
    under this package's key names. :meth:`UPOCR.from_official_checkpoint` builds the model."""
    state, args = load_checkpoint_file(path)
    state = _strip(state)
    try:
        config = {**infer_config(state, args), "img_size": img_size, **overrides}
        return config, checkpoint_filter_fn(state, config)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
