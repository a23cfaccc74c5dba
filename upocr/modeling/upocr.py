"""UPOCR: SwinV2 encoder, bottleneck with a learnable prompt per task, mirrored SwinV2 decoder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.constants import SAFETENSORS_SINGLE_FILE
from safetensors.torch import load_file
from timm.layers import trunc_normal_
from torch import nn

from ..tasks import OFFICIAL_TASK_ORDER, canonical_task, task_indices
from .decoder import SwinV2Decoder
from .encoder import SwinV2Encoder

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
    ):
        super().__init__()
        if len(decoder_depths) != len(encoder_depths) + 1:
            raise ValueError("the decoder needs exactly one stage more than the encoder")
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
                                     num_skips=len(encoder_depths) - 1, out_chans=out_chans)
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
            from ..convert import load_official_checkpoint

            return load_official_checkpoint(path, **kwargs)
        if not path.is_dir() and str(pretrained_model_name_or_path).count("/") > 1:
            raise FileNotFoundError(f"model folder not found: {pretrained_model_name_or_path}")
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
        model = cls(**model_kwargs)
        state = load_file(str(weights), device=str(map_location))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if strict and (missing or unexpected):
            raise ValueError(
                f"weights in {weights} do not match the configuration: "
                f"missing {sorted(missing)[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {sorted(unexpected)[:5]}{'...' if len(unexpected) > 5 else ''}"
            )
        return model.eval()

    # ------------------------------------------------------------------ forward
    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Encoder feature maps, shallowest first."""
        if images.ndim != 4 or images.shape[1] != self.encoder.patch_embed.proj.in_channels:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            raise ValueError(f"image height and width must be multiples of {SIZE_MULTIPLE}, got {h}x{w}")
        return self.encoder(images)

    def decode(self, features: list[torch.Tensor], prompt_indices: torch.Tensor | None) -> list[torch.Tensor]:
        """Decoder outputs ``[H/4, H/2, H]`` for the encoder ``features`` and one prompt index per image."""
        tokens, size = self._bottleneck(features[-1])
        return self._decode_tokens(tokens, size, self.decoder.skip_tokens(features[-2::-1]), prompt_indices)

    def _bottleneck(self, deepest: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        b, c, h, w = deepest.shape
        return self.bottleneck(deepest.permute(0, 2, 3, 1).reshape(b, h * w, c)), (h, w)

    def _decode_tokens(self, tokens, size, skip_tokens, prompt_indices) -> list[torch.Tensor]:
        if self.task_prompt is not None:
            tokens = tokens + self.task_prompt(prompt_indices).unsqueeze(1)
        return self.decoder(tokens, size, skip_tokens)

    def prompt_indices(self, tasks: str | Sequence[str] | None, batch_size: int, device) -> torch.Tensor:
        if tasks is None:
            if len(self.tasks) != 1:
                raise ValueError(f"name the task: this model serves {', '.join(self.tasks)}")
            tasks = self.tasks[0]
        return torch.tensor(task_indices(tasks, self.tasks, batch_size), device=device, dtype=torch.long)

    def forward(self, images: torch.Tensor, tasks: str | Sequence[str] | None = None) -> list[torch.Tensor]:
        features = self.encode(images)
        return self.decode(features, self.prompt_indices(tasks, images.shape[0], images.device))

    def forward_tasks(self, images: torch.Tensor, tasks: Sequence[str] | None = None) -> dict[str, list[torch.Tensor]]:
        """All requested tasks on one batch: ``{task: [H/4, H/2, H]}``. The encoder, the bottleneck
        projection and the skip branches run once; only the prompted decoder stages run per task."""
        tasks = [canonical_task(t) for t in (tasks or self.tasks)]
        features = self.encode(images)
        tokens, size = self._bottleneck(features[-1])
        skip_tokens = self.decoder.skip_tokens(features[-2::-1])
        b = images.shape[0]
        return {t: self._decode_tokens(tokens, size, skip_tokens, self.prompt_indices(t, b, images.device))
                for t in tasks}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
