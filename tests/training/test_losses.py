"""Losses checked against values computed by hand on 4x4 examples."""

import math

import pytest
import torch

from upocr.tasks import IGNORE_VALUE
from upocr.training.losses import (
    VGG16Features,
    gram_matrix,
    masked_smooth_l1_loss,
    removal_loss,
    task_loss,
)


def _const(value, h, w, b=1, c=3):
    return torch.full((b, c, h, w), float(value))


# --- segmentation / tampering: smooth L1 with ignore -----------------------------------------


def _smooth_case():
    """Target 0 everywhere, pixel (2, 2) ignored; see test for the hand computation."""
    target = torch.zeros(1, 3, 4, 4)
    target[:, :, 2, 2] = IGNORE_VALUE
    fine = _const(0.5, 4, 4)
    fine[:, :, 0, 0] = 2.0
    fine[:, :, 2, 2] = 3.0  # ignored
    mid = _const(1.0, 2, 2)
    coarse = _const(0.2, 1, 1)
    return [coarse, mid, fine], target


def test_smooth_l1_hand_value():
    outputs, target = _smooth_case()
    total, parts = masked_smooth_l1_loss(outputs, target)
    # fine (w=10): 15 valid pixels x 3 channels; 14 px at |d|=0.5 -> 0.125, 1 px at |d|=2 -> 1.5
    fine = 10 * (3 * (14 * 0.125 + 1.5)) / 45
    # mid (w=6): nearest picks (0,0),(0,2),(2,0),(2,2); (2,2) ignored; |d|=1 -> 0.5
    mid = 6 * 0.5
    # coarse (w=5): picks (0,0); |d|=0.2 -> 0.02
    coarse = 5 * 0.02
    assert math.isclose(parts["smooth_l1_scale0"].item(), coarse, rel_tol=1e-6)
    assert math.isclose(parts["smooth_l1_scale1"].item(), mid, rel_tol=1e-6)
    assert math.isclose(parts["smooth_l1_scale2"].item(), fine, rel_tol=1e-6)
    assert math.isclose(total.item(), coarse + mid + fine, rel_tol=1e-6)


def test_smooth_l1_ignored_pixel_has_no_effect_and_no_gradient():
    outputs, target = _smooth_case()
    outputs = [o.clone().requires_grad_(True) for o in outputs]
    total, _ = masked_smooth_l1_loss(outputs, target)
    total.backward()
    assert torch.all(outputs[2].grad[:, :, 2, 2] == 0)
    assert torch.all(outputs[1].grad[:, :, 1, 1] == 0)  # (2,2) at full size
    assert outputs[2].grad[:, :, 0, 0].abs().sum() > 0

    changed = [o.detach().clone() for o in outputs]
    changed[2][:, :, 2, 2] = -50.0
    changed[1][:, :, 1, 1] = 7.0
    total2, _ = masked_smooth_l1_loss(changed, target)
    assert math.isclose(total.item(), total2.item(), rel_tol=1e-7)

    # without ignoring, the same change does alter the loss
    a, _ = masked_smooth_l1_loss([o.detach() for o in outputs], target, ignore_value=None)
    b, _ = masked_smooth_l1_loss(changed, target, ignore_value=None)
    assert not math.isclose(a.item(), b.item())


def test_smooth_l1_all_ignored_is_zero_and_finite():
    target = torch.full((1, 3, 4, 4), IGNORE_VALUE)
    outputs = [_const(1.0, 1, 1), _const(1.0, 2, 2), _const(1.0, 4, 4)]
    total, _ = masked_smooth_l1_loss(outputs, target)
    assert total.item() == 0.0


def test_outputs_must_be_coarse_to_fine():
    outputs, target = _smooth_case()
    with pytest.raises(ValueError):
        masked_smooth_l1_loss(outputs[::-1], target)
    with pytest.raises(ValueError):
        masked_smooth_l1_loss(outputs[:2], target)


# --- removal -------------------------------------------------------------------------------


def _removal_case():
    target = torch.zeros(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[:, :, :2, :2] = 1.0  # text in the top-left 2x2 block
    image = torch.full((1, 3, 4, 4), 0.25)
    fine = _const(0.5, 4, 4)
    fine[:, :, :2, :2] = 1.0
    mid = _const(0.4, 2, 2)
    coarse = _const(0.2, 1, 1)
    return [coarse, mid, fine], target, mask, image


def test_removal_l1_hand_value():
    outputs, target, mask, image = _removal_case()
    total, parts = removal_loss(outputs, target, mask, image)
    # fine: text mean 4*1*3/48 = 0.25, bg mean 12*0.5*3/48 = 0.375 -> 10*0.25 + 2*0.375
    # mid: mask picks (0,0) only -> text 0.4*3/12 = 0.1, bg 9*0.4/12 = 0.3 -> 6*0.1 + 1*0.3
    # coarse: pixel (0,0) is text -> 5 * 0.2
    expected = (10 * 0.25 + 2 * 0.375) + (6 * 0.1 + 0.3) + 5 * 0.2
    assert math.isclose(total.item(), expected, rel_tol=1e-6)
    assert math.isclose(parts["l1_scale2"].item(), 3.25, rel_tol=1e-6)
    assert "perceptual" not in parts and "style" not in parts


class _IdentityFeatures(torch.nn.Module):
    def forward(self, x):
        return [x]


def test_removal_perceptual_and_style_with_stand_in_features():
    outputs, target, mask, image = _removal_case()
    total, parts = removal_loss(outputs, target, mask, image, vgg=_IdentityFeatures())
    # composite: 1.0 on text, 0.25 (input) elsewhere; target 0, so L1 = mean value
    perceptual = (4 * 1 + 12 * 0.5) / 16 + (4 * 1 + 12 * 0.25) / 16
    # Gram of a constant-over-channels map: every entry = sum(v^2) / (C*H*W); target Gram = 0
    style = (4 * 1 + 12 * 0.25) / 48 + (4 * 1 + 12 * 0.0625) / 48
    assert math.isclose(parts["perceptual"].item(), 0.01 * perceptual, rel_tol=1e-6)
    assert math.isclose(parts["style"].item(), 120 * style, rel_tol=1e-5)
    assert math.isclose(total.item(), 5.15 + 0.01 * perceptual + 120 * style, rel_tol=1e-5)


def test_gram_matrix_hand_value():
    f = torch.tensor([[[[1.0, 2.0]], [[0.0, 3.0]]]])  # (1, 2, 1, 2)
    g = gram_matrix(f)
    expected = torch.tensor([[[5.0, 6.0], [6.0, 9.0]]]) / 4
    assert torch.allclose(g, expected)


def test_removal_gradient_reaches_every_scale():
    outputs, target, mask, image = _removal_case()
    outputs = [o.clone().requires_grad_(True) for o in outputs]
    total, _ = removal_loss(outputs, target, mask, image, vgg=_IdentityFeatures())
    total.backward()
    for o in outputs:
        assert o.grad is not None and o.grad.abs().sum() > 0


def test_task_loss_dispatch_and_mixed_batch():
    r_out, r_target, r_mask, r_image = _removal_case()
    s_out, s_target = _smooth_case()
    r_total, _ = task_loss("removal", r_out, {"image": r_image, "target": r_target, "mask": r_mask})
    s_total, _ = task_loss("text_segmentation", s_out, {"image": r_image, "target": s_target})
    t_total, _ = task_loss("tampered-text-detection", s_out, {"image": r_image, "target": s_target})
    assert math.isclose(r_total.item(), 5.15, rel_tol=1e-6)
    assert math.isclose(s_total.item(), t_total.item())
    with pytest.raises(ValueError):
        task_loss("text-removal", r_out, {"image": r_image, "target": r_target})

    mixed_out = [torch.cat([a, b]) for a, b in zip(r_out, s_out)]
    batch = {
        "image": torch.cat([r_image, r_image]),
        "target": torch.cat([r_target, s_target]),
        "mask": torch.cat([r_mask, torch.zeros_like(r_mask)]),
    }
    m_total, parts = task_loss(["text-removal", "text-segmentation"], mixed_out, batch)
    assert math.isclose(m_total.item(), 0.5 * r_total.item() + 0.5 * s_total.item(), rel_tol=1e-6)
    assert "text-removal/total" in parts and "text-segmentation/total" in parts


def test_vgg16_features_from_file(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    features = torchvision.models.vgg16(weights=None).features
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    loaded = VGG16Features.from_file(path)
    reference = VGG16Features(features)
    x = torch.rand(1, 3, 16, 16)
    a, b = loaded(x), reference(x)
    assert [t.shape[1] for t in a] == [64, 128, 256]
    assert [t.shape[-1] for t in a] == [8, 4, 2]
    for u, v in zip(a, b):
        assert torch.allclose(u, v)
    assert not any(p.requires_grad for p in loaded.parameters())

    # the features module's own state dict, as safetensors
    from safetensors.torch import save_file

    st_path = tmp_path / "vgg16_features.safetensors"
    save_file({k: v.contiguous() for k, v in features.state_dict().items()}, str(st_path))
    for u, v in zip(VGG16Features.from_file(st_path)(x), b):
        assert torch.allclose(u, v)
    with pytest.raises(FileNotFoundError):
        VGG16Features.from_file(tmp_path / "missing.pth")


# --- foreground weighting ------------------------------------------------------------------


def test_foreground_weight_is_a_weighted_mean_over_text_pixels():
    # 2x2 segmentation target: one text pixel (white), three background pixels, one scale.
    target = torch.zeros(1, 3, 2, 2)
    target[:, :, 0, 0] = 1.0
    output = torch.zeros(1, 3, 2, 2)  # text pixel error 1 -> 0.5; background error 0
    output[:, :, 1, 1] = 0.4  # one background pixel off by 0.4 -> 0.08
    plain, _ = masked_smooth_l1_loss([output], target, scale_weights=(1.0,))
    weighted, _ = masked_smooth_l1_loss([output], target, scale_weights=(1.0,), foreground_weight=4.0)
    assert math.isclose(plain.item(), (0.5 + 0.08) / 4, rel_tol=1e-6)
    # the text pixel counts 4 times: (4 * 0.5 + 0.08) / (4 + 3)
    assert math.isclose(weighted.item(), (4 * 0.5 + 0.08) / 7, rel_tol=1e-6)


def test_foreground_weight_uses_the_tampering_background_colour():
    # red background everywhere but one green (real text) pixel; an all-red answer is wrong only there
    target = torch.zeros(1, 3, 2, 2)
    target[:, 0] = 1.0
    target[:, :, 1, 0] = torch.tensor([0.0, 1.0, 0.0]).view(1, 3)
    output = torch.zeros(1, 3, 2, 2)
    output[:, 0] = 1.0
    batch = {"image": torch.zeros(1, 3, 2, 2), "target": target}
    loss1, _ = task_loss("tampered-text-detection", [output, output, output], batch)
    loss3, _ = task_loss("tampered-text-detection", [output, output, output], batch, foreground_weight=3.0)
    # the one wrong pixel: channels R and G off by 1 -> 2 x 0.5 over 12 elements, or 3x that over 3*3+9
    per_scale_1, per_scale_3 = 1.0 / 12, 3.0 / 18
    assert math.isclose(loss1.item(), 21 * per_scale_1, rel_tol=1e-6)
    assert math.isclose(loss3.item(), 21 * per_scale_3, rel_tol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        masked_smooth_l1_loss([output], target, scale_weights=(1.0,), foreground_weight=0)


def test_foreground_weight_leaves_ignored_pixels_out():
    target = torch.full((1, 3, 2, 2), IGNORE_VALUE)
    target[:, :, 0, 0] = 1.0
    output = torch.zeros(1, 3, 2, 2)
    output[:, :, 1, :] = 9.0  # ignored pixels, huge errors
    loss, _ = masked_smooth_l1_loss([output], target, scale_weights=(1.0,), foreground_weight=5.0)
    assert math.isclose(loss.item(), 0.5, rel_tol=1e-6)


def test_tampered_weight_counts_tampered_pixels_more_than_real_text():
    # red background, one green (real) and one blue (tampered) pixel; the answer is all red
    target = torch.zeros(1, 3, 2, 2)
    target[:, 0] = 1.0
    target[0, :, 0, 0] = torch.tensor([0.0, 1.0, 0.0])
    target[0, :, 1, 1] = torch.tensor([0.0, 0.0, 1.0])
    output = torch.zeros(1, 3, 2, 2)
    output[:, 0] = 1.0
    batch = {"image": torch.zeros(1, 3, 2, 2), "target": target}
    plain, _ = task_loss("tampered-text-detection", [output] * 3, batch, foreground_weight=2.0)
    weighted, _ = task_loss("tampered-text-detection", [output] * 3, batch, foreground_weight=2.0, tampered_weight=6.0)
    # each wrong pixel: two channels off by 1 -> 1.0 summed over its 3 elements; weights real 2, tampered 6
    assert math.isclose(plain.item(), 21 * (2 * 1.0 + 2 * 1.0) / (3 * (2 + 2 + 2)), rel_tol=1e-6)
    assert math.isclose(weighted.item(), 21 * (2 * 1.0 + 6 * 1.0) / (3 * (2 + 6 + 2)), rel_tol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        task_loss("tampered-text-detection", [output] * 3, batch, tampered_weight=0.0)
