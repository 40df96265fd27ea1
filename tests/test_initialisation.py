import pytest
import torch
import torch.nn.functional as F

import fcnxs
from fcnxs.model.initialisation import bilinear_kernel, bilinear_upsampler_weight


def test_bilinear_kernel_values():
    torch.testing.assert_close(bilinear_kernel(4)[0], torch.tensor([0.25, 0.75, 0.75, 0.25]) * 0.25)
    torch.testing.assert_close(bilinear_kernel(3)[1], torch.tensor([0.5, 1.0, 0.5]))
    k = bilinear_kernel(64)
    assert k.shape == (64, 64) and torch.equal(k, k.T) and torch.equal(k, k.flip(0))


@pytest.mark.parametrize("stride", [2, 8, 16, 32])
def test_bilinear_upsampler_reproduces_bilinear_interpolation(stride):
    classes, n = 3, 9
    axis = torch.arange(n, dtype=torch.float32)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    ramps = torch.stack([2 * y + 3 * x, -y + 0.5 * x + 7, 0.25 * x * y]).unsqueeze(0)
    weight = bilinear_upsampler_weight(classes, 2 * stride)
    up = F.conv_transpose2d(ramps, weight, stride=stride)
    # The transposed conv's output i sits at input position (i + 0.5 - stride) / stride, so
    # shifted by stride/2 it is torch's bilinear (align_corners=False); compare the interior
    # where both see two neighbours.
    reference = F.interpolate(ramps, scale_factor=stride, mode="bilinear", align_corners=False)
    shift = stride // 2
    lo, hi = stride, (n - 1) * stride
    torch.testing.assert_close(
        up[..., lo + shift : hi + shift, lo + shift : hi + shift], reference[..., lo:hi, lo:hi]
    )
    # A linear ramp is reproduced exactly: value at position (i + 0.5 - s)/s.
    pos = (torch.arange(lo, hi, dtype=torch.float32) + shift + 0.5 - stride) / stride
    torch.testing.assert_close(up[0, 0, lo + shift, lo + shift : hi + shift], 2 * pos[0] + 3 * pos)


def test_upsampler_maps_each_class_onto_itself_only():
    weight = bilinear_upsampler_weight(4, 16)
    off_diagonal = ~torch.eye(4, dtype=torch.bool)
    assert torch.count_nonzero(weight[off_diagonal]) == 0
    assert all(torch.equal(weight[c, c], bilinear_kernel(16)) for c in range(4))


def _vgg16_state(seed=0):
    """A fully convolutional VGG16 as a state dict under fcnxs names, with its fc8."""
    torch.manual_seed(seed)
    reference = fcnxs.build_model("fcn32s", num_classes=1, seed=seed).state_dict()
    state = {
        k: torch.randn_like(v)
        for k, v in reference.items()
        if not k.startswith(("score", "bigscore"))
    }
    state["fc8.weight"] = torch.randn(1000, 4096, 1, 1)
    state["fc8.bias"] = torch.randn(1000)
    return state


@pytest.mark.slow
def test_staged_transfer_vgg16_to_32s_to_16s_to_8s():
    vgg = _vgg16_state()
    fcn32 = fcnxs.build_model("fcn32s", num_classes=21, seed=1)
    report = fcnxs.transfer(fcn32, vgg)
    state = fcn32.state_dict()
    assert all(torch.equal(state[k], vgg[k]) for k in report.copied)
    assert len(report.copied) == 30 and report.ignored == ["fc8.bias", "fc8.weight"]
    assert report.zeros == ["score.weight", "score.bias"] and report.bilinear == ["bigscore.weight"]
    assert not state["score.weight"].any() and not state["score.bias"].any()
    assert torch.equal(state["bigscore.weight"], bilinear_upsampler_weight(21, 64))

    with torch.no_grad():  # pretend FCN-32s was trained
        for p in fcn32.parameters():
            p.add_(torch.randn_like(p))
    fcn16 = fcnxs.build_model("fcn16s", num_classes=21, seed=2)
    report = fcnxs.transfer(fcn16, fcn32)  # a model, as well as its state dict
    s16, s32 = fcn16.state_dict(), fcn32.state_dict()
    assert set(report.copied) == set(s32) - {"bigscore.weight"}
    assert all(torch.equal(s16[k], s32[k]) for k in report.copied)
    assert set(report.zeros) == {"score_pool4.weight", "score_pool4.bias"}
    assert set(report.bilinear) == {"score2.weight", "bigscore.weight"}
    assert torch.equal(s16["bigscore.weight"], bilinear_upsampler_weight(21, 32))
    assert any("bigscore.weight" in note for note in report.notes)

    with torch.no_grad():
        for p in fcn16.parameters():
            p.add_(torch.randn_like(p))
    fcn8 = fcnxs.build_model("fcn8s", num_classes=21, seed=3)
    report = fcnxs.transfer(fcn8, fcn16.state_dict())
    s8, s16 = fcn8.state_dict(), fcn16.state_dict()
    assert set(report.copied) == set(s16) - {"bigscore.weight"}
    assert all(torch.equal(s8[k], s16[k]) for k in report.copied)
    assert set(report.zeros) == {"score_pool3.weight", "score_pool3.bias"}
    assert set(report.bilinear) == {"score4.weight", "bigscore.weight"}
    assert torch.equal(s8["score4.weight"], bilinear_upsampler_weight(21, 4))
    assert torch.equal(s8["bigscore.weight"], bilinear_upsampler_weight(21, 16))


@pytest.mark.slow
def test_transfer_rejects_a_source_without_the_trunk():
    vgg = _vgg16_state()
    del vgg["conv3_2.weight"]
    model = fcnxs.build_model("fcn32s", num_classes=21)
    with pytest.raises(fcnxs.FcnxsError, match=r"vgg16\.params: lacks conv3_2\.weight"):
        fcnxs.transfer(model, vgg, origin="vgg16.params")
    vgg = _vgg16_state()
    vgg["fc7.weight"] = torch.zeros(4096, 4096)
    with pytest.raises(fcnxs.FcnxsError, match=r"fc7.weight has shape \[4096, 4096\]"):
        fcnxs.transfer(model, vgg)


@pytest.mark.slow  # several full-size models: seconds each where the CPU is slow
def test_fresh_weights_are_reproducible_with_a_seed():
    a = fcnxs.build_model("fcn32s", num_classes=3, seed=7).state_dict()
    b = fcnxs.build_model("fcn32s", num_classes=3, seed=7).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not a["score.weight"].any()
