"""UPOCR: SwinV2 encoder, bottleneck with a learnable prompt per task, mirrored SwinV2 decoder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.constants import SAFETENSORS_SINGLE_FILE
from safetensors.torch import load_file
from timm.layers import trunc_normal_
from torch import nn

from ..tasks import OFFICIAL_TASK_ORDER, TEXT_REMOVAL, canonical_task, task_indices
from .decoder import DetailCapture, SwinV2Decoder
from .encoder import SwinV2Encoder
from .swinv2 import tracing

MODEL_CARD_TEMPLATE = """
---
{{ card_data }}
---

# UPOCR

A UPOCR model ("Towards Unified Pixel-Level OCR Interface", ICML 2024): one SwinV2
encoder-decoder that turns an image into an image, with a learnable prompt per task, for
text removal, text segmentation and tampered text detection.

- Tasks (prompt order): {{ tasks | default("see config.json", true) }}
- Code: {{ repo_url | default("see the upocr package", true) }}
- Paper: {{ paper_url }}

```python
from upocr import UPOCRPipeline
pipe = UPOCRPipeline.from_pretrained("{{ repo_id | default("path/to/this/folder", true) }}")
result = pipe("photo.jpg", task="text-segmentation")
```

{{ model_details | default("", true) }}
"""

#: Named configurations. ``small`` is the paper network; ``tiny`` is the CPU default.
PRESETS: dict[str, dict] = {
    "small": dict(
        embed_dim=96, encoder_depths=(2, 2, 18, 2), encoder_num_heads=(3, 6, 12, 24),
        encoder_window_size=16, encoder_pretrained_window_size=16,
        decoder_depths=(2, 18, 2, 2, 2), decoder_num_heads=(24, 12, 6, 3, 2),
        decoder_window_size=8, decoder_pretrained_window_size=8, img_size=512,
    ),
    "tiny": dict(
        embed_dim=32, encoder_depths=(2, 2, 2, 2), encoder_num_heads=(1, 2, 4, 8),
        encoder_window_size=8, encoder_pretrained_window_size=8,
        decoder_depths=(2, 2, 2, 2, 2), decoder_num_heads=(8, 4, 2, 1, 1),
        decoder_window_size=8, decoder_pretrained_window_size=8, img_size=512,
    ),
}

#: Spatial sizes fed to the model must be multiples of this (patch 4 x three merges).
SIZE_MULTIPLE = 32


class UPOCR(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="upocr",
    tags=["upocr", "ocr", "text-removal", "text-segmentation", "tampered-text-detection", "image-to-image"],
    pipeline_tag="image-to-image",
    license="apache-2.0",
    paper_url="https://arxiv.org/abs/2312.02694",
    model_card_template=MODEL_CARD_TEMPLATE,
):
    """Unified pixel-level OCR network.

    ``model(images, tasks)``: ``images`` float ``(B, 3, H, W)`` in [0, 1] with H, W multiples of 32;
    ``tasks`` one task name or one per image. Returns three raw outputs ``[H/4, H/2, H]``, each
    ``(B, 3, h, w)``. Every argument of the constructor is saved in config.json.

    Options beyond the paper network (off by default and in the ``small`` preset, which stays the
    official architecture):

    * ``detail_channels``: widths ``(c_full, c_half)`` of a :class:`DetailCapture` path of light
      convolutions on the input image, fused into the H and H/2 output heads, so stroke edges and
      texture come back from the pixels rather than from 4x4 patches.
    * ``removal_residual``: text removal predicts an edit of the input (the input, average-pooled
      to each output's scale, is added to the raw output), so untouched pixels need no synthesis.
    * ``tampered_bias``: a decision offset of the trained weights, not part of the network: the
      pipeline adds it to the tampered-text channel of the tampering output before each pixel
      takes its class (0: the official argmax). A model that ranks forged words above real ones
      but rarely puts them first gets it from a calibration on validation scenes
      (``tools/release_default_model.py``).
    * ``stroke_refinement``: ``None`` (off), or the ink-coverage offset with which the pipeline
      moves the text mask's edges onto the strokes, from the image's own colours
      (:func:`upocr.tasks.strokes.refine_strokes`); also a calibrated decision setting of the
      trained weights, not part of the network.
    """

    def __init__(
        self,
        embed_dim: int = 96,
        encoder_depths: Sequence[int] = (2, 2, 18, 2),
        encoder_num_heads: Sequence[int] = (3, 6, 12, 24),
        encoder_window_size: int = 16,
        encoder_pretrained_window_size: int = 16,
        decoder_depths: Sequence[int] = (2, 18, 2, 2, 2),
        decoder_num_heads: Sequence[int] = (24, 12, 6, 3, 2),
        decoder_window_size: int = 8,
        decoder_pretrained_window_size: int = 8,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.3,
        patch_size: int = 4,
        in_chans: int = 3,
        out_chans: int = 3,
        tasks: Sequence[str] = OFFICIAL_TASK_ORDER,
        task_prompt: bool = True,
        img_size: int = 512,
        detail_channels: Sequence[int] | None = None,
        removal_residual: bool = False,
        tampered_bias: float = 0.0,
        stroke_refinement: float | None = None,
    ):
        super().__init__()
        validate_config(embed_dim=embed_dim, encoder_depths=encoder_depths, encoder_num_heads=encoder_num_heads,
                        encoder_window_size=encoder_window_size, decoder_depths=decoder_depths,
                        decoder_num_heads=decoder_num_heads, decoder_window_size=decoder_window_size,
                        mlp_ratio=mlp_ratio, drop_path_rate=drop_path_rate, patch_size=patch_size,
                        in_chans=in_chans, out_chans=out_chans, img_size=img_size,
                        detail_channels=detail_channels, tampered_bias=tampered_bias,
                        stroke_refinement=stroke_refinement)
        self.tasks = [canonical_task(t) for t in tasks]
        self.img_size = int(img_size)
        if not task_prompt and len(self.tasks) != 1:
            raise ValueError("a model without task prompts serves exactly one task")
        enc_dpr = torch.linspace(0, drop_path_rate, sum(encoder_depths)).tolist()
        dec_dpr = torch.linspace(0, drop_path_rate, sum(decoder_depths)).tolist()
        self.encoder = SwinV2Encoder(in_chans, embed_dim, encoder_depths, encoder_num_heads, encoder_window_size,
                                     encoder_pretrained_window_size, mlp_ratio, enc_dpr, patch_size)
        bottleneck_dim = self.encoder.dims[-1]
        self.bottleneck = nn.Linear(bottleneck_dim, bottleneck_dim)
        self.task_prompt = nn.Embedding(len(self.tasks), bottleneck_dim) if task_prompt else None
        self.decoder = SwinV2Decoder(bottleneck_dim, decoder_depths, decoder_num_heads, decoder_window_size,
                                     decoder_pretrained_window_size, mlp_ratio, dec_dpr,
                                     num_skips=len(encoder_depths) - 1, out_chans=out_chans,
                                     detail_channels=detail_channels or ())
        self.detail = DetailCapture(in_chans, detail_channels) if detail_channels else None
        self.removal_residual = bool(removal_residual)
        self.tampered_bias = float(tampered_bias)
        self.stroke_refinement = None if stroke_refinement is None else float(stroke_refinement)
        if self.removal_residual and (TEXT_REMOVAL not in self.tasks or in_chans != out_chans):
            raise ValueError("removal_residual needs the text-removal task and as many output as input channels")
        self.apply(_init_weights)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_preset(cls, name: str, **overrides) -> "UPOCR":
        """A freshly initialised model from a named configuration (``small`` or ``tiny``)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def config(self) -> dict:
        """The constructor arguments (what config.json holds)."""
        return dict(self._hub_mixin_config)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *, strict: bool = True,
                        **kwargs) -> "UPOCR":
        """Load from a Hub repo id, a folder (model.safetensors + config.json) or an official
        ``.pth`` checkpoint (converted in memory). Keys must match exactly unless ``strict=False``."""
        path = Path(pretrained_model_name_or_path)
        if path.suffix in {".pth", ".pt", ".ckpt"} and path.is_file():
            return cls.from_official_checkpoint(path, **kwargs)
        if not path.is_dir() and str(pretrained_model_name_or_path).count("/") > 1:
            raise FileNotFoundError(f"model folder not found: {pretrained_model_name_or_path}")
        if path.is_dir() and not (path / "config.json").is_file():  # said once, here (not also logged)
            raise FileNotFoundError(f"{path} has no config.json (the model's configuration), so its "
                                    "weights cannot be read; save models with save_pretrained")
        return super().from_pretrained(pretrained_model_name_or_path, strict=strict, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download, local_files_only, token,
                         map_location: str = "cpu", strict: bool = True, **model_kwargs) -> "UPOCR":
        if os.path.isdir(model_id):
            weights = Path(model_id) / SAFETENSORS_SINGLE_FILE
            if not weights.is_file():
                raise FileNotFoundError(f"{model_id} has no {SAFETENSORS_SINGLE_FILE}")
        else:
            weights = hf_hub_download(model_id, SAFETENSORS_SINGLE_FILE, revision=revision, cache_dir=cache_dir,
                                      force_download=force_download, local_files_only=local_files_only, token=token)
        model = cls(**model_kwargs)  # the configuration is validated before anything is allocated
        try:
            state = load_file(str(weights), device=str(map_location))
        except Exception as error:  # safetensors' own error types: truncated or not a safetensors file
            raise ValueError(f"{weights}: not a readable safetensors file ({str(error).splitlines()[0]})") from None
        ours = model.state_dict()
        wrong = [(k, tuple(v.shape), tuple(ours[k].shape)) for k, v in state.items() if k in ours and v.shape != ours[k].shape]
        if wrong:
            name, theirs, expected = wrong[0]
            raise ValueError(f"{weights} does not match its config.json: {name} is {list(theirs)} in the file but "
                             f"{list(expected)} in the configured model ({len(wrong)} tensors differ)")
        missing, unexpected = model.load_state_dict(state, strict=False)
        if strict and (missing or unexpected):
            raise ValueError(
                f"weights in {weights} do not match the configuration: "
                f"missing {sorted(missing)[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {sorted(unexpected)[:5]}{'...' if len(unexpected) > 5 else ''}"
            )
        return model.eval()

    @classmethod
    def from_official_checkpoint(cls, path: str | os.PathLike, *, img_size: int = 512, map_location: str = "cpu",
                                 strict: bool = True, **overrides) -> "UPOCR":
        """A model from an official UPOCR or ViTEraser ``.pth`` (read with ``weights_only=True``;
        the configuration is inferred from the tensor shapes, see :mod:`upocr.modeling.official`)."""
        from .official import CheckpointError, read_official_checkpoint

        config, state = read_official_checkpoint(path, img_size=img_size, **overrides)
        model = cls(**config)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if strict and (missing or unexpected):
            raise CheckpointError(
                f"{path}: keys do not match the inferred configuration: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
        return model.to(map_location).eval()

    # ------------------------------------------------------------------ forward
    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Encoder feature maps, shallowest first."""
        if images.ndim != 4 or images.shape[1] != self.encoder.patch_embed.proj.in_channels:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            raise ValueError(f"image height and width must be multiples of {SIZE_MULTIPLE}, got {h}x{w}")
        return self.encoder(images)

    def decode(self, features: list[torch.Tensor], prompt_indices: torch.Tensor | None,
               images: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Decoder outputs ``[H/4, H/2, H]`` for the encoder ``features`` and one prompt index per
        image. ``images`` (the encoder's input) is needed when the model has a detail path or
        residual removal."""
        return self._decode_shared(self._shared(features, images), prompt_indices)

    def _shared(self, features: list[torch.Tensor], images: torch.Tensor | None) -> dict:
        """What every task's decoder pass reads: bottleneck tokens, skip tokens, detail maps, input."""
        if images is None and (self.detail is not None or self.removal_residual):
            raise ValueError("this model's decoder reads the input images: pass images=")
        deepest = features[-1]
        b, c, h, w = deepest.shape
        return {
            "tokens": self.bottleneck(deepest.permute(0, 2, 3, 1).reshape(b, h * w, c)),
            "size": (h, w),
            "skips": self.decoder.skip_tokens(features[-2::-1]),
            "details": self.detail(images) if self.detail is not None else (),
            "images": images,
        }

    def _decode_shared(self, shared: dict, prompt_indices: torch.Tensor | None) -> list[torch.Tensor]:
        tokens = shared["tokens"]
        if self.task_prompt is not None:
            tokens = tokens + self.task_prompt(prompt_indices).unsqueeze(1)
        outputs = self.decoder(tokens, shared["size"], shared["skips"], shared["details"])
        if self.removal_residual:
            outputs = self._add_input_for_removal(outputs, shared["images"], prompt_indices)
        return outputs

    def _add_input_for_removal(self, outputs: list[torch.Tensor], images: torch.Tensor,
                               prompt_indices: torch.Tensor | None) -> list[torch.Tensor]:
        """Removal outputs become ``input + raw output`` at every scale (the input average-pooled)."""
        if prompt_indices is None:
            is_removal = images.new_ones(images.shape[0])
        else:
            is_removal = (prompt_indices == self.tasks.index(TEXT_REMOVAL)).to(images.dtype)
        if not tracing() and not bool(is_removal.any()):  # the task is data in an export
            return outputs
        gate = is_removal.view(-1, 1, 1, 1)
        full = images.shape[-1]
        return [o + gate * (F.avg_pool2d(images, full // o.shape[-1]) if o.shape[-1] != full else images).to(o.dtype)
                for o in outputs]

    def prompt_indices(self, tasks: str | Sequence[str] | None, batch_size: int, device) -> torch.Tensor:
        if tasks is None:
            if len(self.tasks) != 1:
                raise ValueError(f"name the task: this model serves {', '.join(self.tasks)}")
            tasks = self.tasks[0]
        return torch.tensor(task_indices(tasks, self.tasks, batch_size), device=device, dtype=torch.long)

    def forward(self, images: torch.Tensor, tasks: str | Sequence[str] | None = None) -> list[torch.Tensor]:
        features = self.encode(images)
        return self.decode(features, self.prompt_indices(tasks, images.shape[0], images.device), images)

    def forward_tasks(self, images: torch.Tensor, tasks: Sequence[str] | None = None) -> dict[str, list[torch.Tensor]]:
        """All requested tasks on one batch: ``{task: [H/4, H/2, H]}``. The encoder, the bottleneck
        projection and the skip branches run once; only the prompted decoder stages run per task."""
        tasks = [canonical_task(t) for t in (tasks or self.tasks)]
        shared = self._shared(self.encode(images), images)
        b = images.shape[0]
        return {t: self._decode_shared(shared, self.prompt_indices(t, b, images.device)) for t in tasks}

    def no_weight_decay(self) -> set[str]:
        """Parameters that AdamW must not decay besides biases and norms: the attention logit
        scales, the continuous position bias MLPs and the task prompts (the SwinV2 recipe)."""
        return {name for name, _ in self.named_parameters()
                if name.endswith("logit_scale") or ".cpb_mlp." in name or name.startswith("task_prompt.")}

    def encoder_parameter_names(self) -> set[str]:
        """Parameters of the encoder (they learn at ``lr_encoder_ratio`` times the rate)."""
        return {f"encoder.{name}" for name, _ in self.encoder.named_parameters()}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


#: Upper bounds that keep a config from allocating without limit (far above any real model).
_MAX_DEPTH = 64
_MAX_DIM = 4096
_MAX_HEADS = 256
_MAX_IMG_SIZE = 8192


def validate_config(**config) -> None:
    """Reject a configuration whose values are out of range before anything is allocated
    (``ValueError`` naming the field): from a hand-edited or hostile config.json, a depth of
    10**6 or a negative size must fail at once, not run the machine out of memory."""

    def positive_int(name: str, value, upper: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= upper:
            raise ValueError(f"config field {name} must be an integer in 1..{upper}, got {value!r}")
        return value

    def int_list(name: str, value, upper: int, allow_zero: bool = False) -> list[int]:
        if not isinstance(value, (list, tuple)) or not value or len(value) > 16:
            raise ValueError(f"config field {name} must be a list of 1 to 16 integers, got {value!r}")
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int) or not (0 if allow_zero else 1) <= v <= upper:
                raise ValueError(f"config field {name} holds {v!r}; expected integers in 1..{upper}")
        return list(value)

    embed_dim = positive_int("embed_dim", config["embed_dim"], _MAX_DIM)
    enc = int_list("encoder_depths", config["encoder_depths"], _MAX_DEPTH, allow_zero=True)
    dec = int_list("decoder_depths", config["decoder_depths"], _MAX_DEPTH, allow_zero=True)
    enc_heads = int_list("encoder_num_heads", config["encoder_num_heads"], _MAX_HEADS)
    dec_heads = int_list("decoder_num_heads", config["decoder_num_heads"], _MAX_HEADS)
    if len(enc_heads) != len(enc) or len(dec_heads) != len(dec):
        raise ValueError("config: each stage needs a depth and a number of heads")
    if len(dec) != len(enc) + 1:
        raise ValueError("the decoder needs exactly one stage more than the encoder")
    if embed_dim * 2 ** (len(enc) - 1) > _MAX_DIM:
        raise ValueError(f"config: embed_dim {embed_dim} with {len(enc)} stages exceeds {_MAX_DIM} channels")
    for name in ("encoder_window_size", "decoder_window_size", "patch_size", "in_chans", "out_chans"):
        positive_int(name, config[name], 64)
    positive_int("img_size", config["img_size"], _MAX_IMG_SIZE)
    for name in ("mlp_ratio", "drop_path_rate"):
        value = config[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 16:
            raise ValueError(f"config field {name} must be a number in 0..16, got {value!r}")
    bias = config.get("tampered_bias", 0.0)
    if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not -1 <= bias <= 1:
        raise ValueError(f"config field tampered_bias must be a number in -1..1, got {bias!r}")
    offset = config.get("stroke_refinement")
    if offset is not None and (isinstance(offset, bool) or not isinstance(offset, (int, float))
                               or not -0.5 <= offset <= 0.5):
        raise ValueError(f"config field stroke_refinement must be null or a number in -0.5..0.5, got {offset!r}")
    if config.get("detail_channels"):
        channels = int_list("detail_channels", config["detail_channels"], 256)
        if len(channels) > 2:
            raise ValueError("config field detail_channels takes at most two widths (full and half resolution)")


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
