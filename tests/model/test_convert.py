"""Converting official UPOCR and ViTEraser checkpoints, and refusing unsafe files."""

from __future__ import annotations

import argparse
import os

import numpy as np
import pytest
import torch
from helpers import FIXTURES

from upocr import UPOCR
from upocr.cli import main as cli_main
from upocr.convert import CheckpointError, convert_checkpoint, load_official_checkpoint
from upocr.tasks import TEXT_REMOVAL

OFFICIAL = FIXTURES / "official_tiny.pth"


@pytest.fixture(scope="module")
def official_state():
    return torch.load(OFFICIAL, map_location="cpu", weights_only=True)["model"]


@pytest.fixture(scope="module")
def reference_model():
    return load_official_checkpoint(OFFICIAL)


def _run(model, task=TEXT_REMOVAL):
    x = torch.from_numpy(np.load(FIXTURES / "reference.npz")["input_1x128x192"])
    with torch.inference_mode():
        return model(x, task)[-1]


def test_training_checkpoint_with_args_vgg_and_module_prefix(tmp_path, official_state, reference_model):
    """What a DistributedDataParallel training run saves: wrapper dict, Namespace args, optimiser
    state, ``module.`` prefixes and the perceptual-loss VGG16 weights."""
    state = {f"module.{k}": v for k, v in official_state.items()}
    state["module.vgg16.features.0.weight"] = torch.randn(64, 3, 3, 3)
    args = argparse.Namespace(swin_enc_window_size=8, swin_enc_pretrained_ws=8, lr=5e-4, output_dir="/x")
    path = tmp_path / "checkpoint0099.pth"
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}, "epoch": 99,
                "args": args, "dl_epoch": 3}, path)
    model = load_official_checkpoint(path)
    assert torch.equal(_run(model), _run(reference_model))


def test_bare_state_dict(tmp_path, official_state, reference_model):
    path = tmp_path / "bare.pth"
    torch.save(dict(official_state), path)
    assert torch.equal(_run(load_official_checkpoint(path)), _run(reference_model))


def test_viteraser_checkpoint_is_a_removal_only_model(tmp_path, official_state, reference_model):
    state = {}
    for key, value in official_state.items():
        if key.startswith("task_prompt."):
            continue
        key = key.replace("proj.", "pixel_embed.", 1) if key.startswith("proj.") else key
        state[key.replace("decoder.output_conv.", "decoder.erase_conv.")] = value
    path = tmp_path / "viteraser.pth"
    torch.save({"model": state}, path)
    model = load_official_checkpoint(path)
    assert model.tasks == [TEXT_REMOVAL] and model.task_prompt is None
    # same weights, no prompt: equal to the UPOCR network with a zero prompt
    zero_prompt = load_official_checkpoint(OFFICIAL)
    with torch.no_grad():
        zero_prompt.task_prompt.weight.zero_()
    torch.testing.assert_close(_run(model, None), _run(zero_prompt), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="no prompt for task"):
        _run(model, "text-segmentation")


def test_convert_writes_a_loadable_folder_atomically(tmp_path, reference_model):
    out = tmp_path / "converted"
    convert_checkpoint(OFFICIAL, out)
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json", "README.md"}
    assert "non-commercial" in (out / "README.md").read_text()
    assert torch.equal(_run(UPOCR.from_pretrained(out)), _run(reference_model))
    with pytest.raises(FileExistsError, match="not empty"):
        convert_checkpoint(OFFICIAL, out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".converted")]  # no staging left behind


def test_from_pretrained_accepts_an_official_pth(reference_model):
    assert torch.equal(_run(UPOCR.from_pretrained(OFFICIAL)), _run(reference_model))


def test_cli_convert(tmp_path, capsys):
    assert cli_main(["convert", str(OFFICIAL), str(tmp_path / "m")]) == 0
    assert "tasks text-removal, tampered-text-detection, text-segmentation" in capsys.readouterr().out
    assert cli_main(["convert", str(OFFICIAL), str(tmp_path / "m")]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert cli_main(["convert", str(OFFICIAL), str(tmp_path / "m"), "--overwrite"]) == 0


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.reliability
def test_a_crafted_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"proj.weight": torch.zeros(2, 2)}, "payload": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match="evil.pth: refused to load"):
        load_official_checkpoint(path)
    assert not marker.exists()
    assert cli_main(["convert", str(path), str(tmp_path / "out")]) == 1
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable PyTorch checkpoint"),
    (b"hello, not a checkpoint", "not a readable PyTorch checkpoint"),
])
def test_unreadable_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"broken.pth: {message}"):
        load_official_checkpoint(path)


def test_a_checkpoint_of_another_network_is_rejected(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3)}, path)
    with pytest.raises(CheckpointError, match="not a UPOCR/ViTEraser checkpoint"):
        load_official_checkpoint(path)
