import copy

import pytest
import torch
import torch.nn.functional as F

import fcnxs
from fcnxs.model.config import ARCHS, CAFFE_SEMANTICS, Semantics
from fcnxs.model.preprocessing import to_input
from helpers import meta_model, random_image

PARAMETERS = {"fcn32s": 136_152_917, "fcn16s": 134_815_994, "fcn8s": 134_489_759}


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_counts(arch):
    model = meta_model(arch)
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[arch]


def test_parameter_names_are_the_original_layer_names():
    names = [k.rsplit(".", 1)[0] for k in meta_model("fcn8s").state_dict()]
    trunk = [f"conv{b}_{i}" for b, n in [(1, 2), (2, 2), (3, 3), (4, 3), (5, 3)]
             for i in range(1, n + 1)]  # fmt: skip
    head = ["score", "score2", "score_pool4", "score4", "score_pool3", "bigscore"]
    assert list(dict.fromkeys(names)) == [*trunk, "fc6", "fc7", *head]
    upsamplers = [meta_model("fcn8s").get_submodule(n) for n in ("score2", "score4", "bigscore")]
    assert all(u.bias is None for u in upsamplers)


SIZES = [(375, 500), (500, 375), (187, 251), (31, 17), (5, 5), (1, 1), (26, 27), (57, 58),
         (224, 224), (333, 1), (640, 480)]  # fmt: skip


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(
    "semantics",
    [Semantics(), CAFFE_SEMANTICS, Semantics(upsample_output_padding=False)],
    ids=["mxnet", "caffe", "mxnet2015"],
)
def test_output_has_the_input_size(arch, semantics):
    model = meta_model(arch, num_classes=7, semantics=semantics)
    for h, w in SIZES:
        out = model(torch.empty(2, 3, h, w, device="meta"))
        assert tuple(out.shape) == (2, 7, h, w)


def test_intermediate_shapes_at_375x500():
    model = meta_model("fcn8s")
    seen = {}
    for name in ["conv1_1", "pool1", "pool3", "pool4", "pool5", "fc6", "fc7", "score",
                 "score2", "score4", "bigscore"]:  # fmt: skip
        model.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: seen.__setitem__(name, tuple(out.shape[-2:]))
        )
    model(torch.empty(1, 3, 375, 500, device="meta"))
    assert seen == {
        "conv1_1": (573, 698), "pool1": (286, 349), "pool3": (71, 87), "pool4": (35, 43),
        "pool5": (17, 21), "fc6": (11, 15), "fc7": (11, 15), "score": (11, 15),
        "score2": (25, 33), "score4": (53, 69), "bigscore": (439, 567),
    }  # fmt: skip


@pytest.mark.slow  # builds several full-size segmenters, each packing its weights
def test_real_forward_on_odd_and_tiny_sizes(fcn8s_model, rng):
    for h, w in [(187, 251), (31, 17), (5, 5)]:
        labels, scores = fcnxs.segment(fcn8s_model, random_image(rng, h, w), return_scores=True)
        assert labels.shape == (h, w) and scores.shape == (5, h, w)
        assert labels.dtype.name == "uint8" and bool(torch.isfinite(torch.from_numpy(scores)).all())


def test_tiny_input_is_padded_with_the_mean_then_cropped(fcn8s_model):
    x = torch.randn(1, 3, 5, 9)
    with torch.inference_mode():
        direct = fcn8s_model(x)
        padded = fcn8s_model(F.pad(x, (0, 26 - 9, 0, 26 - 5)))
    torch.testing.assert_close(direct, padded[..., :5, :9], rtol=0, atol=0)


@pytest.mark.slow  # several full-size models: seconds each where the CPU is slow
def test_at_once_pool_scaling_equals_scaled_score_weights():
    sem = Semantics(pool4_scale=0.01, pool3_scale=0.0001)
    scaled = fcnxs.build_model("fcn8s", num_classes=3, seed=1, semantics=sem).eval()
    plain = fcnxs.build_model("fcn8s", num_classes=3, seed=1).eval()
    with torch.no_grad():
        for name in ("score_pool4", "score_pool3"):
            torch.nn.init.normal_(scaled.get_submodule(name).weight)
            torch.nn.init.normal_(scaled.get_submodule(name).bias)
        state = scaled.state_dict()
        state["score_pool4.weight"] = state["score_pool4.weight"] * 0.01
        state["score_pool3.weight"] = state["score_pool3.weight"] * 0.0001
        plain.load_state_dict(state)
        x = torch.randn(1, 3, 40, 48)
        torch.testing.assert_close(scaled(x), plain(x), rtol=1e-4, atol=1e-4)


def test_preprocessing_follows_the_configuration():
    image = torch.arange(3 * 2 * 2, dtype=torch.uint8).reshape(3, 2, 2).permute(1, 2, 0)
    mx = fcnxs.build_model("fcn32s", num_classes=2, seed=0)
    x = to_input(image.numpy(), mx.config.preprocessing)
    expected = image.permute(2, 0, 1).float() - torch.tensor([123.68, 116.779, 103.939]).view(
        3, 1, 1
    )
    torch.testing.assert_close(x[0], expected)
    caffe = fcnxs.build_model("fcn32s", num_classes=2, seed=0,
                              preprocessing=fcnxs.model.config.CAFFE_PREPROCESSING)  # fmt: skip
    bgr = image.permute(2, 0, 1).float().flip(0)
    torch.testing.assert_close(
        to_input(image.numpy(), caffe.config.preprocessing)[0],
        bgr - torch.tensor([104.00699, 116.66877, 122.67892]).view(3, 1, 1),
    )
    tv = fcnxs.build_model(
        "fcn32s", num_classes=2, preprocessing=fcnxs.model.config.TORCHVISION_PREPROCESSING
    )
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(
        to_input(image.numpy(), tv.config.preprocessing)[0],
        (image.permute(2, 0, 1) / 255 - mean) / std,
    )


def test_fc6_as_a_matrix_product_gives_the_convolutions_values_and_gradients():
    from fcnxs.model.fcn import _conv_by_matmul

    conv = torch.nn.Conv2d(6, 10, 7)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 9, 12, generator=generator)
    upstream = torch.randn(2, 10, 3, 6, generator=generator)
    results = []
    for forward in (conv, lambda t: _conv_by_matmul(conv, t)):
        conv.zero_grad()
        xi = x.clone().requires_grad_()
        out = forward(xi)
        out.backward(upstream)
        results.append((out.detach(), xi.grad, conv.weight.grad.clone(), conv.bias.grad.clone()))
    for reference, got in zip(*results, strict=True):
        torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-5)


def test_training_on_a_cpu_runs_fc6_as_a_matrix_product(fcn8s_model, monkeypatch):
    from fcnxs.model import fcn as model_module

    calls = []
    real = model_module._conv_by_matmul
    monkeypatch.setattr(model_module, "_conv_by_matmul", lambda c, t: calls.append(1) or real(c, t))
    x = torch.randn(1, 3, 40, 52, generator=torch.Generator().manual_seed(1)) * 50
    model = copy.deepcopy(fcn8s_model)
    with torch.no_grad():
        evaluated = model(x)
        model.dropout = 0.0
        trained = model.train()(x)
    assert len(calls) == 1
    torch.testing.assert_close(
        trained, evaluated, rtol=1e-4, atol=1e-4 * evaluated.abs().max().item()
    )
