"""Convert official UPOCR and ViTEraser checkpoints into folders that :meth:`UPOCR.from_pretrained`
loads (``upocr convert``).

Accepted files: the official training/eval checkpoint (``{"model": state_dict, "args": Namespace,
...}``) or a bare state dict, with or without a ``module.`` prefix and ``vgg16.*`` loss keys; and
ViTEraser checkpoints (``pixel_embed.*``, ``decoder.erase_conv.*``, no task prompt). The file is
read with ``torch.load(weights_only=True)``, allowing only ``argparse.Namespace`` besides tensors
and plain containers: anything else in the pickle is refused, never executed. Reading and key
mapping live next to the network, in :mod:`upocr.modeling.official`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .modeling.official import CheckpointError, checkpoint_filter_fn, infer_config, load_checkpoint_file
from .modeling.upocr import UPOCR

__all__ = ["CheckpointError", "checkpoint_filter_fn", "convert_checkpoint", "infer_config", "load_checkpoint_file",
           "load_official_checkpoint"]


def load_official_checkpoint(path: str | Path, **kwargs) -> UPOCR:
    """Build a :class:`UPOCR` from an official UPOCR or ViTEraser checkpoint file
    (:meth:`UPOCR.from_official_checkpoint`)."""
    return UPOCR.from_official_checkpoint(path, **kwargs)


def convert_checkpoint(path: str | Path, out_dir: str | Path, *, overwrite: bool = False, push_to_hub: str | None = None,
                       **overrides) -> UPOCR:
    """Convert ``path`` and write a folder that :meth:`UPOCR.from_pretrained` loads.

    The folder is written next to its destination and renamed into place, so a failed run never
    leaves half a model; an existing non-empty folder is replaced only with ``overwrite=True``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise FileExistsError(f"{out_dir} already exists and is not empty; pass overwrite=True (--overwrite)")
    model = load_official_checkpoint(path, **overrides)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        details = (f"Converted from the official checkpoint `{Path(path).name}`. The official weights are "
                   "released for non-commercial research use: their licence applies to this folder.")
        model.save_pretrained(staging, model_card_kwargs={"tasks": ", ".join(model.tasks), "model_details": details})
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if push_to_hub:
        model.push_to_hub(push_to_hub, model_card_kwargs={"tasks": ", ".join(model.tasks), "repo_id": push_to_hub})
    return model
