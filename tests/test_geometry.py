import pytest
import torch
from torch import nn
from writers import REFERENCE_OFFSETS

from fcnxs.model.config import ARCHS, CAFFE_SEMANTICS, ModelConfig, Semantics
from fcnxs.model.geometry import (
    Axis,
    derive_crop_offsets,
    feature_sizes,
    fits,
    padded_length,
)

# The Caffe reference values (REFERENCE_OFFSETS); the derivation must find them.


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("semantics", [Semantics(), CAFFE_SEMANTICS], ids=["mxnet", "caffe"])
def test_derived_crop_offsets_are_the_reference_values(arch, semantics):
    assert derive_crop_offsets(arch, semantics) == REFERENCE_OFFSETS[arch]


def test_feature_sizes_at_375x500_under_mxnet_semantics():
    # DESIGN §2: the shapes an MXNet FCN-8s gives at 375×500.
    h = feature_sizes(ModelConfig("fcn8s"), 375)
    w = feature_sizes(ModelConfig("fcn8s"), 500)
    expected = {
        "conv1_1": (573, 698), "pool1": (286, 349), "pool3": (71, 87), "pool4": (35, 43),
        "pool5": (17, 21), "fc6": (11, 15), "fc7": (11, 15), "score2": (25, 33),
        "score4": (53, 69), "bigscore": (439, 567),
    }  # fmt: skip
    assert {k: (h[k], w[k]) for k in expected} == expected
    assert feature_sizes(ModelConfig("fcn16s"), 375)["bigscore"] == 431
    assert feature_sizes(ModelConfig("fcn16s"), 500)["bigscore"] == 559
    assert feature_sizes(ModelConfig("fcn32s"), 375)["bigscore"] == 415
    assert feature_sizes(ModelConfig("fcn32s"), 500)["bigscore"] == 543


@pytest.mark.parametrize("ceil", [False, True])
def test_pool_window_sizes_match_pytorch(ceil):
    window = Axis(2, 2, ceil=ceil)
    pool = nn.MaxPool2d(2, 2, ceil_mode=ceil)
    for n in range(2, 40):
        assert window.out_size(n) == pool(torch.empty(1, 1, n, 2, device="meta")).shape[2]


@pytest.mark.parametrize("stride,adj", [(2, 0), (2, 1), (8, 7), (32, 0)])
def test_transposed_window_sizes_match_pytorch(stride, adj):
    window = Axis(2 * stride, stride, transposed=True, output_padding=adj)
    up = nn.ConvTranspose2d(1, 1, 2 * stride, stride, output_padding=adj, device="meta")
    for n in range(1, 20):
        assert window.out_size(n) == up(torch.empty(1, 1, n, 1, device="meta")).shape[2]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(
    "semantics",
    [Semantics(), CAFFE_SEMANTICS, Semantics(upsample_output_padding=False)],
    ids=["mxnet", "caffe", "mxnet2015"],
)
def test_padded_length_is_the_smallest_length_that_fits(arch, semantics):
    config = ModelConfig(arch, semantics=semantics)
    for n in [1, 2, 5, 17, 25, 26, 31, 57, 187, 375, 500]:
        m = padded_length(config, n)
        assert m >= n and fits(config, m)
        assert all(not fits(config, k) for k in range(n, m))
    # Ordinary image sizes are never padded: outputs stay those of the original framework.
    if semantics.upsample_output_padding or semantics.pool_rounding == "ceil":
        assert all(padded_length(config, n) == n for n in range(26, 600))
