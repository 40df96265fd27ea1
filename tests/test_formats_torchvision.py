import collections

import pytest
import torch
from writers import torchvision_vgg16_state

import fcnxs


@pytest.fixture(scope="module")
def vgg16_pth(tmp_path_factory, fcn8s_model):
    state = torchvision_vgg16_state(fcn8s_model.state_dict())
    path = tmp_path_factory.mktemp("torchvision") / "vgg16-397923af.pth"
    torch.save(collections.OrderedDict(state), path)
    return path, state


def test_torchvision_vgg16_starts_an_fcn32s(vgg16_pth, fcn8s_model):
    path, tv = vgg16_pth
    model, report = fcnxs.start_model("fcn32s", path)
    state = model.state_dict()
    trunk = {k: v for k, v in fcn8s_model.state_dict().items() if k.startswith(("conv", "fc"))}
    assert all(torch.equal(state[k], v) for k, v in trunk.items())
    assert torch.equal(state["fc6.weight"].reshape(4096, -1), tv["classifier.0.weight"])
    assert report.ignored == ["fc8.bias", "fc8.weight"]
    pre = model.config.preprocessing
    assert pre.scale == pytest.approx(1 / 255) and pre.std == pytest.approx((0.229, 0.224, 0.225))
    assert model.config.num_classes == 21 and not state["score.weight"].any()


def test_a_vgg16_is_not_a_segmentation_model(vgg16_pth):
    with pytest.raises(fcnxs.FcnxsError, match="is a VGG16 without an FCN head"):
        fcnxs.load_model(vgg16_pth[0])


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_bad_pth_files_fail_with_one_line(tmp_path, vgg16_pth, capsys):
    def expect(file, match):
        with pytest.raises(fcnxs.FcnxsError, match=match) as info:
            fcnxs.start_model("fcn32s", file)
        assert str(info.value).startswith(str(file)) and "\n" not in str(info.value)

    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    expect(tmp_path / "list.pth", "is not a state dict")
    torch.save({"w": Payload()}, tmp_path / "code.pth")
    expect(tmp_path / "code.pth", "not a PyTorch state dict: it holds Python objects")
    assert "this must never run" not in capsys.readouterr().out
    data = vgg16_pth[0].read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    expect(tmp_path / "cut.pth", "not a PyTorch state dict")
    bn = {"features.0.weight": torch.zeros(1), "features.1.running_mean": torch.zeros(1)}
    torch.save(bn, tmp_path / "vgg16_bn.pth")
    expect(tmp_path / "vgg16_bn.pth", "batch-normalised VGG")
    odd = {"features.0.weight": torch.zeros(1), "foo.bar": torch.zeros(1)}
    torch.save(odd, tmp_path / "odd.pth")
    expect(tmp_path / "odd.pth", "feature convolutions")
