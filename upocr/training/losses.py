"""Training losses for the three UPOCR tasks.

The network returns three raw outputs, coarse to fine, at 1/4, 1/2 and full resolution, each
``(B, 3, h, w)``. Targets are ``(B, 3, H, W)`` in [0, 1]; they (and the text mask) are
downsampled to each output's size with nearest-neighbour interpolation.

* Text removal (:func:`removal_loss`): multi-scale masked L1 with (text, non-text) weights
  ``(5, 0.8)``, ``(6, 1)``, ``(10, 2)`` from coarse to fine. Optionally, a VGG16 perceptual loss
  (weight 0.01) and a style loss on Gram matrices (weight 120), both on the pool1-pool3 features
  of the finest output and of the composite (input outside the text, output inside), compared
  with the features of the target.
* Text segmentation and tampered text detection (:func:`masked_smooth_l1_loss`): smooth-L1
  with weights 5, 6, 10 from coarse to fine; pixels whose target is the ignore value 128/255 on
  all three channels are left out, and each scale's loss is the mean over the valid elements.

VGG16 ImageNet weights are not bundled and are never downloaded. The perceptual and style terms
are computed only when a :class:`VGG16Features` is given, built from a local weights file with
:meth:`VGG16Features.from_file` (a torchvision ``vgg16`` state dict, full model or ``features``
only, as ``.pth``/``.pt`` or ``.safetensors``). Without it the removal loss is the L1 part alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..tasks import IGNORE_TOLERANCE, IGNORE_VALUE, TAMPER_TARGET_COLOURS, canonical_task, get_task

#: (text, non-text) L1 weights for the removal outputs, coarse to fine.
REMOVAL_SCALE_WEIGHTS: tuple[tuple[float, float], ...] = ((5.0, 0.8), (6.0, 1.0), (10.0, 2.0))
#: Smooth-L1 weights for the segmentation and tampering outputs, coarse to fine.
SMOOTH_L1_SCALE_WEIGHTS: tuple[float, ...] = (5.0, 6.0, 10.0)
PERCEPTUAL_WEIGHT = 0.01
STYLE_WEIGHT = 120.0
#: Target colour of the tampering background (red), in [0, 1].
TAMPER_BACKGROUND = tuple(c / 255 for c in TAMPER_TARGET_COLOURS[0])

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
#: End indices (exclusive) of the pool1, pool2 and pool3 blocks in torchvision's ``vgg16().features``.
_VGG16_POOL_ENDS = (5, 10, 17)


def _as_list(outputs: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    outputs = list(outputs)
    if not outputs:
        raise ValueError("no outputs given")
    return outputs


def _check_scales(outputs: list[torch.Tensor], n_weights: int) -> None:
    if len(outputs) != n_weights:
        raise ValueError(f"got {len(outputs)} outputs but {n_weights} scale weights")
    for out in outputs:
        if out.dim() != 4:
            raise ValueError(f"each output must be (B, C, h, w), got shape {tuple(out.shape)}")
    sizes = [o.shape[-2] * o.shape[-1] for o in outputs]
    if any(b < a for a, b in zip(sizes, sizes[1:])):
        raise ValueError(
            "outputs must be ordered coarse to fine; got sizes "
            + ", ".join(str(tuple(o.shape[-2:])) for o in outputs)
        )


def resize_nearest(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour resize of a ``(B, C, H, W)`` tensor to ``size`` (no-op when equal)."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x.float(), size=size, mode="nearest").to(x.dtype)


def ignore_mask(target: torch.Tensor, ignore_value: float = IGNORE_VALUE, tolerance: float = IGNORE_TOLERANCE) -> torch.Tensor:
    """``(B, 1, H, W)`` boolean: pixels whose target equals ``ignore_value`` on every channel."""
    return ((target - ignore_value).abs() < tolerance).all(dim=1, keepdim=True)


# --------------------------------------------------------------------------------------------
# Text removal
# --------------------------------------------------------------------------------------------


def multiscale_masked_l1(
    outputs: torch.Tensor | Sequence[torch.Tensor],
    target: torch.Tensor,
    text_mask: torch.Tensor,
    scale_weights: Sequence[tuple[float, float]] = REMOVAL_SCALE_WEIGHTS,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum over scales of ``w_text * mean|m (o - t)| + w_bg * mean|(1 - m)(o - t)|``.

    Means run over all ``B * C * h * w`` elements of the scale (as ``nn.L1Loss`` on the masked
    tensors), ``m`` is the text mask (1 = text) resized to the scale.
    """
    outputs = _as_list(outputs)
    _check_scales(outputs, len(scale_weights))
    total = outputs[-1].new_zeros(())
    parts: dict[str, torch.Tensor] = {}
    for index, (out, (w_text, w_bg)) in enumerate(zip(outputs, scale_weights)):
        size = out.shape[-2:]
        t = resize_nearest(target, size).to(out.dtype)
        m = resize_nearest(text_mask, size).to(out.dtype)
        diff = (out - t).abs()
        text_term = (diff * m).mean()
        bg_term = (diff * (1 - m)).mean()
        scale_loss = w_text * text_term + w_bg * bg_term
        parts[f"l1_scale{index}"] = scale_loss.detach()
        total = total + scale_loss
    return total, parts


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, C)`` Gram matrix of ``(B, C, H, W)`` features, divided by ``C * H * W``."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


class VGG16Features(nn.Module):
    """Frozen VGG16 feature extractor returning the pool1, pool2 and pool3 activations.

    Inputs are RGB in [0, 1]; ImageNet normalisation is applied inside. Build it from a local
    weights file with :meth:`from_file`; ``VGG16Features(features)`` wraps an existing
    ``vgg16().features`` module (or any sequential with the same layout).
    """

    def __init__(self, features: nn.Sequential | None = None):
        super().__init__()
        if features is None:
            from torchvision.models import vgg16

            features = vgg16(weights=None).features
        layers = list(features.children())
        if len(layers) < _VGG16_POOL_ENDS[-1]:
            raise ValueError(f"expected at least {_VGG16_POOL_ENDS[-1]} VGG16 layers, got {len(layers)}")
        starts = (0,) + _VGG16_POOL_ENDS[:-1]
        self.blocks = nn.ModuleList(nn.Sequential(*layers[s:e]) for s, e in zip(starts, _VGG16_POOL_ENDS))
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGG16Features":  # always frozen, always eval
        return super().train(False)

    @classmethod
    def from_file(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "VGG16Features":
        """Load torchvision VGG16 weights from a local ``.pth``/``.pt`` or ``.safetensors`` file.

        Accepts the full ``vgg16`` state dict (keys ``features.N.weight``; the classifier is
        ignored) or the ``features`` module's own state dict (keys ``N.weight``).
        """
        from torchvision.models import vgg16

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"VGG16 weights file not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device=str(map_location))
        else:
            state = torch.load(path, map_location=map_location, weights_only=True)
        if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
            state = state["state_dict"]
        if any(k.startswith("features.") for k in state):
            state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        features = vgg16(weights=None).features
        features.load_state_dict(state, strict=True)
        return cls(features)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats


def perceptual_and_style_loss(
    vgg: nn.Module, output: torch.Tensor, composite: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unweighted perceptual and style losses: sums over the feature levels of
    ``L1(f(out), f(gt)) + L1(f(comp), f(gt))`` and the same on Gram matrices."""
    feats_out = vgg(output)
    feats_comp = vgg(composite)
    with torch.no_grad():
        feats_gt = vgg(target)
    perceptual = output.new_zeros(())
    style = output.new_zeros(())
    for fo, fc, fg in zip(feats_out, feats_comp, feats_gt):
        perceptual = perceptual + F.l1_loss(fo, fg) + F.l1_loss(fc, fg)
        gg = gram_matrix(fg)
        style = style + F.l1_loss(gram_matrix(fo), gg) + F.l1_loss(gram_matrix(fc), gg)
    return perceptual, style


def removal_loss(
    outputs: torch.Tensor | Sequence[torch.Tensor],
    target: torch.Tensor,
    text_mask: torch.Tensor,
    image: torch.Tensor,
    vgg: nn.Module | None = None,
    scale_weights: Sequence[tuple[float, float]] = REMOVAL_SCALE_WEIGHTS,
    perceptual_weight: float = PERCEPTUAL_WEIGHT,
    style_weight: float = STYLE_WEIGHT,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Text removal loss. Returns ``(total, parts)``; ``parts`` values are detached.

    ``outputs``: coarse-to-fine list of ``(B, 3, h, w)``; ``target``: text-free image
    ``(B, 3, H, W)``; ``text_mask``: ``(B, 1, H, W)``, 1 = text; ``image``: the input
    ``(B, 3, H, W)``. ``vgg``: a :class:`VGG16Features` (or any module mapping an image to a list
    of feature maps); ``None`` skips the perceptual and style terms.
    """
    outputs = _as_list(outputs)
    total, parts = multiscale_masked_l1(outputs, target, text_mask, scale_weights)
    parts["l1"] = total.detach()
    if vgg is not None and (perceptual_weight or style_weight):
        final = outputs[-1]
        size = final.shape[-2:]
        t = resize_nearest(target, size).to(final.dtype)
        m = resize_nearest(text_mask, size).to(final.dtype)
        x = resize_nearest(image, size).to(final.dtype)
        composite = x * (1 - m) + final * m
        perceptual, style = perceptual_and_style_loss(vgg, final, composite, t)
        parts["perceptual"] = (perceptual_weight * perceptual).detach()
        parts["style"] = (style_weight * style).detach()
        total = total + perceptual_weight * perceptual + style_weight * style
    parts["total"] = total.detach()
    return total, parts


# --------------------------------------------------------------------------------------------
# Segmentation and tampered text detection
# --------------------------------------------------------------------------------------------


def masked_smooth_l1_loss(
    outputs: torch.Tensor | Sequence[torch.Tensor],
    target: torch.Tensor,
    scale_weights: Sequence[float] = SMOOTH_L1_SCALE_WEIGHTS,
    ignore_value: float | None = IGNORE_VALUE,
    tolerance: float = IGNORE_TOLERANCE,
    beta: float = 1.0,
    foreground_weight: float = 1.0,
    background: Sequence[float] = (0.0, 0.0, 0.0),
    colour_weights: Sequence[tuple[Sequence[float], float]] = (),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Multi-scale smooth-L1 ignoring pixels whose target is ``ignore_value`` on all channels.

    Each scale's loss is the sum of smooth-L1 over valid elements divided by their number (a
    scale with no valid pixel contributes 0). ``ignore_value=None`` ignores nothing.

    ``foreground_weight`` > 1 makes it a weighted mean in which every foreground pixel (a valid
    pixel whose target is not the ``background`` colour: black for segmentation, red for
    tampering) counts that many times; 1 is the official plain mean. Text covers a few percent
    of a typical image, so without it a network trained from scratch settles on "no text".
    ``colour_weights``: ``(colour, weight)`` pairs; valid pixels whose target is that colour
    count ``weight`` times instead (tampered text is rarer than real text).
    Returns ``(total, parts)``.
    """
    if foreground_weight <= 0 or any(weight <= 0 for _, weight in colour_weights):
        raise ValueError(f"loss weights must be positive, got {foreground_weight} and {list(colour_weights)}")
    outputs = _as_list(outputs)
    _check_scales(outputs, len(scale_weights))
    total = outputs[-1].new_zeros(())
    parts: dict[str, torch.Tensor] = {}
    for index, (out, weight) in enumerate(zip(outputs, scale_weights)):
        t = resize_nearest(target, out.shape[-2:]).to(out.dtype)
        elementwise = F.smooth_l1_loss(out, t, reduction="none", beta=beta)
        if ignore_value is None:
            valid = torch.ones_like(elementwise, dtype=torch.bool)
        else:
            valid = (~ignore_mask(t, ignore_value, tolerance)).expand_as(elementwise)
        weights = valid.to(out.dtype)
        if foreground_weight != 1.0:
            colour = torch.as_tensor(background, dtype=t.dtype, device=t.device).view(1, -1, 1, 1)
            foreground = ((t - colour).abs() > 0.5).any(dim=1, keepdim=True)
            weights = weights * (1.0 + (foreground_weight - 1.0) * foreground.to(out.dtype))
        for colour, colour_weight in colour_weights:
            colour = torch.as_tensor(colour, dtype=t.dtype, device=t.device).view(1, -1, 1, 1)
            hit = ((t - colour).abs() <= 0.5).all(dim=1, keepdim=True) & valid[:, :1]
            weights = torch.where(hit, torch.full_like(weights, float(colour_weight)), weights)
        summed = torch.where(valid, elementwise * weights, torch.zeros_like(elementwise)).sum()
        scale_loss = weight * summed / weights.sum().clamp_min(1).to(out.dtype)
        parts[f"smooth_l1_scale{index}"] = scale_loss.detach()
        total = total + scale_loss
    parts["total"] = total.detach()
    return total, parts


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------


def _single_task_loss(task: str, outputs: list[torch.Tensor], batch: Mapping, vgg: nn.Module | None, **kwargs):
    return get_task(task).loss(outputs, batch, vgg=vgg, **kwargs)


def task_loss(
    task: str | Sequence[str],
    outputs: torch.Tensor | Sequence[torch.Tensor],
    batch: Mapping[str, torch.Tensor],
    vgg: nn.Module | None = None,
    **kwargs,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss for a batch of one task, or of mixed tasks.

    ``task``: one task name (aliases accepted) for the whole batch, or one name per sample; with
    several tasks the batch is split by task, each group's loss is computed on its samples and
    the total is the mean of the group losses weighted by group size (parts are prefixed with
    the task name). ``batch`` holds ``image``, ``target`` and, for removal, ``mask``. Extra
    keyword arguments go to the task's loss function (single-task batches only).
    """
    outputs = _as_list(outputs)
    if isinstance(task, str):
        return _single_task_loss(canonical_task(task), outputs, batch, vgg, **kwargs)

    names = [canonical_task(t) for t in task]
    batch_size = outputs[0].shape[0]
    if len(names) != batch_size:
        raise ValueError(f"got {len(names)} task names for a batch of {batch_size}")
    if len(set(names)) == 1:
        return _single_task_loss(names[0], outputs, batch, vgg, **kwargs)
    if kwargs:
        raise ValueError("extra loss arguments are only supported for single-task batches")
    total = outputs[-1].new_zeros(())
    parts: dict[str, torch.Tensor] = {}
    for name in dict.fromkeys(names):
        idx = torch.tensor([i for i, n in enumerate(names) if n == name], device=outputs[0].device)
        sub_outputs = [o.index_select(0, idx) for o in outputs]
        sub_batch = {
            k: (v.index_select(0, idx.to(v.device)) if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == batch_size else v)
            for k, v in batch.items()
        }
        loss, sub_parts = _single_task_loss(name, sub_outputs, sub_batch, vgg)
        share = len(idx) / batch_size
        total = total + share * loss
        parts.update({f"{name}/{k}": v for k, v in sub_parts.items()})
    parts["total"] = total.detach()
    return total, parts


__all__ = [
    "REMOVAL_SCALE_WEIGHTS",
    "SMOOTH_L1_SCALE_WEIGHTS",
    "PERCEPTUAL_WEIGHT",
    "STYLE_WEIGHT",
    "VGG16Features",
    "gram_matrix",
    "ignore_mask",
    "masked_smooth_l1_loss",
    "multiscale_masked_l1",
    "perceptual_and_style_loss",
    "removal_loss",
    "resize_nearest",
    "task_loss",
]
