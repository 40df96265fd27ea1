"""The engine survives a PyTorch without (or with a changed) private call: each one removed,
raising or giving wrong values, `segment` falls back to the public path, gives its labels,
and warns once."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from fcnxs.core import torch_internals
from fcnxs.inference.segmenter import Segmenter
from fcnxs.model.preprocessing import normalise
from helpers import narrow_fcn8s


@pytest.fixture(autouse=True)
def _fresh_verdicts(monkeypatch):
    """Each test's calls are checked anew, and later tests see the real ones again."""
    monkeypatch.setattr(torch_internals, "_verdicts", {})


class _Without:
    """A namespace of torch's without one attribute (a release that renamed it)."""

    def __init__(self, namespace, name: str) -> None:
        self._namespace, self._name = namespace, name

    def __getattr__(self, attr: str):
        if attr == self._name:
            raise AttributeError(f"{attr} is not in this build")
        return getattr(self._namespace, attr)


def _raising(*args, **kwargs):
    raise RuntimeError("schema changed")


def _wrong(real):
    """The real call's result, off by a tenth of its scale (a silently changed meaning)."""

    def call(*args, **kwargs):
        result = real(*args, **kwargs)
        if isinstance(result, bool):
            return "yes"
        if result.is_mkldnn:  # a packed weight
            return (result.to_dense() * 1.1 + 0.1).to_mkldnn()
        return result * 1.1 + 0.1

    return call


def _break(monkeypatch, dotted: str, how: str) -> None:
    """Make torch's ``dotted`` call missing, raising or wrong."""
    *parents, name = dotted.split(".")[1:]
    owner = torch
    for part in parents[:-1]:
        owner = getattr(owner, part)
    namespace = getattr(owner, parents[-1])
    if dotted == "torch.Tensor._version":
        behaviour = {
            "missing": property(lambda t: (_ for _ in ()).throw(AttributeError("_version"))),
            "raising": property(lambda t: _raising()),
            "wrong": property(lambda t: 0),  # never sees a change
        }[how]
        monkeypatch.setattr(torch.Tensor, "_version", behaviour)
        return
    if how == "missing":
        monkeypatch.setattr(owner, parents[-1], _Without(namespace, name))
    else:
        real = getattr(namespace, name)
        monkeypatch.setattr(namespace, name, _raising if how == "raising" else _wrong(real))


CALLS = [
    (call, feature)
    for feature in (
        torch_internals.PACKED_CONVOLUTION,
        torch_internals.PACKED_INNER_PRODUCT,
        torch_internals.VERSION_COUNTERS,
    )
    for call in feature.calls
]


def _segment(cli, model_file, tmp_path, rgb, *options) -> tuple[np.ndarray, list[str]]:
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    status, _, err = cli("segment", tmp_path / "photo.png", "--model", model_file,
                         "-o", tmp_path / "out", *options)  # fmt: skip
    assert status == 0, err
    labels = np.asarray(Image.open(tmp_path / "out" / "photo.png"))
    (tmp_path / "out" / "photo.png").unlink()
    return labels, [line for line in err if line.startswith("fcnxs: warning:")]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (70, 90, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def public_labels(fcn8s_model, photo) -> np.ndarray:
    """The labels of the public path: the eager network."""
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float()
    with torch.inference_mode():
        scores = fcn8s_model(normalise(x, fcn8s_model.config.preprocessing))
    return scores[0].argmax(0).to(torch.uint8).numpy()


def _check(cli, model_file, tmp_path, photo, public_labels, monkeypatch, dotted, feature, how):
    _break(monkeypatch, dotted, how)
    labels, warnings = _segment(cli, model_file, tmp_path, photo)
    assert np.array_equal(labels, public_labels)
    assert len(warnings) == 1, warnings
    assert feature.name in warnings[0] and torch.__version__ in warnings[0]
    assert "slower" in warnings[0]


@pytest.mark.parametrize(("dotted", "feature"), CALLS, ids=[c for c, _ in CALLS])
def test_segment_without_a_private_call_gives_the_public_labels_and_warns_once(
    cli, model_file, tmp_path, photo, public_labels, monkeypatch, dotted, feature
):
    _check(cli, model_file, tmp_path, photo, public_labels, monkeypatch, dotted, feature, "missing")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["raising", "wrong"])
@pytest.mark.parametrize(("dotted", "feature"), CALLS, ids=[c for c, _ in CALLS])
def test_segment_with_a_changed_private_call_gives_the_public_labels_and_warns_once(
    cli, model_file, tmp_path, photo, public_labels, monkeypatch, dotted, feature, how
):
    _check(cli, model_file, tmp_path, photo, public_labels, monkeypatch, dotted, feature, how)


@pytest.mark.parametrize(
    "how", ["missing", *(pytest.param(h, marks=pytest.mark.slow) for h in ("raising", "wrong"))]
)
def test_without_the_half_precision_probe_bf16_runs_as_where_it_is_emulated(
    monkeypatch, cpu_without_half, caplog, how
):
    """Unknown counts as not native: bf16 takes the plain convolutions, as on an AVX2 CPU.
    (A narrow FCN-8s: bf16 is emulated on such a CPU, and VGG16's width takes a minute.)"""
    model, photo = narrow_fcn8s(), np.random.default_rng(3).integers(0, 256, (70, 90, 3))
    emulated = Segmenter(model, precision="bf16").labels(photo.astype(np.uint8))
    monkeypatch.undo()  # the real native_on_cpu again, with the probe broken below
    monkeypatch.setattr(torch_internals, "_verdicts", {})
    _break(monkeypatch, torch_internals.NATIVE_HALF.calls[0], how)
    with caplog.at_level(logging.WARNING, logger="fcnxs"):
        labels = Segmenter(model, precision="bf16").labels(photo.astype(np.uint8))
        Segmenter(model, precision="bf16").labels(photo.astype(np.uint8))
    assert np.array_equal(labels, emulated)
    probe = [
        r.getMessage() for r in caplog.records if torch_internals.NATIVE_HALF.name in r.getMessage()
    ]
    assert len(probe) == 1 and "slower" in probe[0]


def test_every_check_passes_on_this_pytorch():
    """The calls are right here (else the engine would be on its public path unawares)."""
    assert torch_internals.packed_convolutions(torch.float32)
    assert torch_internals.packed_inner_products(torch.float32)
    assert torch_internals.version_counters()
    assert isinstance(torch_internals.mkldnn_native(torch.bfloat16), bool)
