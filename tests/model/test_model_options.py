"""Architecture options beyond the paper network: detail path, residual removal, config checks."""

from __future__ import annotations

import json

import pytest
import torch

from upocr import UPOCR
from upocr.modeling.decoder import DetailFusionHead, OutputHead
from upocr.training.trainer import copy_matching_weights

OPTIONS = dict(detail_channels=[8, 16], removal_residual=True)


def _tiny(**overrides) -> UPOCR:
    torch.manual_seed(0)
    return UPOCR.from_preset("tiny", img_size=64, drop_path_rate=0.0, **overrides)


def test_options_are_off_in_the_presets():
    for preset in ("small", "tiny"):
        model = UPOCR.from_preset(preset)
        assert model.detail is None and not model.removal_residual
        assert all(isinstance(h, OutputHead) for h in model.decoder.heads)
        assert model.config.get("detail_channels") is None and not model.config.get("removal_residual")


def test_options_round_trip_through_save_and_load(tmp_path):
    model = _tiny(**OPTIONS).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["detail_channels"] == [8, 16] and config["removal_residual"] is True
    loaded = UPOCR.from_pretrained(tmp_path)
    assert isinstance(loaded.decoder.heads[-1], DetailFusionHead) and loaded.removal_residual
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(images, ["text-removal", "text-segmentation"]),
                        loaded(images, ["text-removal", "text-segmentation"])):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_detail_path_feeds_the_two_finest_heads_from_the_pixels():
    kinds = [type(h) for h in _tiny(detail_channels=[8, 16]).decoder.heads]
    assert kinds == [OutputHead, DetailFusionHead, DetailFusionHead]
    images = torch.rand(1, 3, 64, 64)
    poked = images.clone()
    poked[0, :, 33, 33] = 1 - poked[0, :, 33, 33]
    changes = {}
    for name, overrides in (("plain", {}), ("detail", {"detail_channels": [8, 16]})):
        model = _tiny(**overrides).eval()
        torch.nn.init.zeros_(model.encoder.patch_embed.proj.weight)  # the transformer path sees no pixels
        with torch.no_grad():
            changes[name] = (model(poked, "text-segmentation")[-1] - model(images, "text-segmentation")[-1]).abs()[0].sum(0)
    assert changes["plain"].max() == 0
    near, far = changes["detail"][29:38, 29:38], changes["detail"].clone()
    far[17:50, 17:50] = 0
    assert near.max() > 0 and far.max() == 0  # the pixel reaches the output around it, and only there


def test_residual_removal_outputs_the_input_when_the_decoder_adds_nothing():
    model = _tiny(removal_residual=True).eval()
    for head in model.decoder.heads:  # a decoder that predicts no edit
        torch.nn.init.zeros_(head.conv.weight)
        torch.nn.init.zeros_(head.conv.bias)
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        outs = model(images, ["text-removal", "text-segmentation", "text-removal"])
        both = model.forward_tasks(images, ["text-removal", "text-segmentation"])
    torch.testing.assert_close(outs[-1][0], images[0], rtol=0, atol=0)
    torch.testing.assert_close(outs[-1][2], images[2], rtol=0, atol=0)
    torch.testing.assert_close(outs[0][0], torch.nn.functional.avg_pool2d(images[:1], 4)[0])
    assert outs[-1][1].abs().max() == 0  # other tasks are not offset by the input
    torch.testing.assert_close(both["text-removal"][-1], images, rtol=0, atol=0)


def test_fine_tuning_with_new_modules_keeps_every_shared_weight():
    plain = _tiny()
    extended = _tiny(**OPTIONS)
    fresh = copy_matching_weights(plain, extended)
    assert fresh and all(name.startswith(("detail.", "decoder.heads.1.", "decoder.heads.2.")) for name in fresh)
    theirs = plain.state_dict()
    for name, value in extended.state_dict().items():
        if name not in fresh:
            torch.testing.assert_close(value, theirs[name], rtol=0, atol=0)


@pytest.mark.parametrize("field, value, message", [
    ("img_size", -256, "img_size"),
    ("encoder_depths", [2, 2, 10**6, 2], "encoder_depths"),
    ("embed_dim", 0, "embed_dim"),
    ("decoder_num_heads", [8, 4, 2], "heads"),
    ("detail_channels", [8, 16, 32], "detail_channels"),
    ("mlp_ratio", "four", "mlp_ratio"),
])
@pytest.mark.reliability
def test_absurd_configs_are_refused_before_anything_is_allocated(field, value, message):
    with pytest.raises(ValueError, match=message):
        UPOCR.from_preset("tiny", **{field: value})


@pytest.mark.parametrize("damage, message", [
    ("truncate", "not a readable safetensors file"),
    ("no-config", "has no config.json"),
    ("wrong-shape", "does not match its config.json: .* is \\[.*\\] in the file"),
])
@pytest.mark.reliability
def test_a_broken_model_folder_fails_with_one_line_naming_the_file(tmp_path, damage, message):
    folder = tmp_path / "model"
    _tiny().save_pretrained(folder)
    weights = folder / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:5000])
    elif damage == "no-config":
        (folder / "config.json").unlink()
    else:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "embed_dim": 48}))
    with pytest.raises((ValueError, FileNotFoundError), match=message) as caught:
        UPOCR.from_pretrained(folder)
    assert str(folder) in str(caught.value) and "\n" not in str(caught.value)


def test_tampered_bias_round_trips_and_moves_only_the_tampering_decision(tmp_path):
    import numpy as np

    from upocr import UPOCRPipeline

    torch.manual_seed(0)
    model = UPOCR.from_preset("tiny", embed_dim=8, encoder_num_heads=[1, 1, 2, 2], decoder_num_heads=[2, 2, 1, 1, 1],
                              img_size=64, tampered_bias=0.5)
    model.save_pretrained(tmp_path / "m")
    loaded = UPOCR.from_pretrained(tmp_path / "m")
    assert loaded.tampered_bias == 0.5 and loaded.config["tampered_bias"] == 0.5
    plain = UPOCR(**{**loaded.config, "tampered_bias": 0.0})
    plain.load_state_dict(loaded.state_dict())
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    biased, unbiased = (UPOCRPipeline(m, device="cpu", engine="fp32").run_all(image) for m in (loaded, plain))
    raw = UPOCRPipeline(plain, device="cpu", engine="fp32").predict_outputs(image, ["tampered-text-detection"])
    shifted = raw["tampered-text-detection"] + np.array([0, 0, 0.5], np.float32)
    assert (biased["tampered-text-detection"].labels == shifted.argmax(-1)).all()
    assert (biased["tampered-text-detection"].labels == 2).sum() > (unbiased["tampered-text-detection"].labels == 2).sum()
    assert (biased["text-segmentation"].mask == unbiased["text-segmentation"].mask).all()
    with pytest.raises(ValueError, match="tampered_bias"):
        UPOCR.from_preset("tiny", tampered_bias=5.0)


def test_stroke_refinement_round_trips_and_moves_only_mask_edges(tmp_path):
    import numpy as np

    from upocr import UPOCRPipeline
    from upocr.tasks.strokes import refine_strokes

    model = UPOCR.from_preset("tiny", embed_dim=8, encoder_num_heads=[1, 1, 2, 2], decoder_num_heads=[2, 2, 1, 1, 1],
                              img_size=64, stroke_refinement=0.15)
    model.save_pretrained(tmp_path / "m")
    loaded = UPOCR.from_pretrained(tmp_path / "m")
    assert loaded.stroke_refinement == 0.15 and loaded.config["stroke_refinement"] == 0.15
    assert UPOCR.from_preset("small").stroke_refinement is None  # the paper network decides as published
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    refined = UPOCRPipeline(loaded, device="cpu", engine="fp32")
    raw = UPOCRPipeline(loaded, device="cpu", engine="fp32", refine_strokes=False)
    output = raw.predict_outputs(image, ["text-segmentation"])["text-segmentation"]
    probability = np.clip(output.mean(-1), 0, 1)
    assert np.array_equal(raw(image).probability, probability)
    assert np.allclose(refined(image).probability, refine_strokes(probability, image, 0.15))
    assert (refined(image).mask != raw(image).mask).any()  # it does move edges on this model's output
    # the other tasks decide as without it
    tampering = [p(image, "tampered-text-detection").labels for p in (refined, raw)]
    removal = [p(image, "text-removal", preserve_background=False).image for p in (refined, raw)]
    assert np.array_equal(*tampering) and np.array_equal(*removal)
    for bad in (0.9, float("nan"), True):
        with pytest.raises(ValueError, match="stroke_refinement"):
            UPOCR.from_preset("tiny", stroke_refinement=bad)
