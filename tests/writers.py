"""Weight files in the formats of MXNet, Caffe and torchvision, written from first principles
(struct, protobuf, torch.save) so that the readers are tested against the format, not
against themselves."""

from __future__ import annotations

import json
import struct

import numpy as np
import torch
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

# ---------------------------------------------------------------- MXNet .params

MX_DTYPES = {np.float32: 0, np.float64: 1, np.float16: 2, np.uint8: 3, np.int32: 4, np.int8: 5,
             np.int64: 6}  # fmt: skip


def mx_record(array: np.ndarray, version: str) -> bytes:
    """One NDArray record: 'legacy' (no magic, u32 dims), 'v1', 'v2' or 'v3'."""
    code = MX_DTYPES[array.dtype.type]
    context = struct.pack("<ii", 2, 1)  # saved from gpu(1): must be ignored
    if version == "legacy":
        head = struct.pack(f"<I{array.ndim}I", array.ndim, *array.shape)
    else:
        magic = {"v1": 0xF993FAC8, "v2": 0xF993FAC9, "v3": 0xF993FACA}[version]
        head = struct.pack("<I", magic)
        if version != "v1":
            head += struct.pack("<i", 0)  # dense storage
        head += struct.pack(f"<i{array.ndim}q", array.ndim, *array.shape)
    return head + context + struct.pack("<i", code) + np.ascontiguousarray(array).tobytes()


def write_mx_params(path, arrays: dict[str, np.ndarray], version: str = "v2") -> None:
    out = [struct.pack("<QQQ", 0x112, 0, len(arrays))]
    out += [mx_record(a, version) for a in arrays.values()]
    out.append(struct.pack("<Q", len(arrays)))
    for name in arrays:
        encoded = name.encode()
        out.append(struct.pack("<Q", len(encoded)) + encoded)
    with open(path, "wb") as f:
        f.writelines(out)


def mx_arrays_from_state(state: dict[str, torch.Tensor], extras: bool = True) -> dict:
    """A tutorial-style checkpoint: arg:<layer>_<kind>, plus data, label and fc8."""
    arrays = {f"arg:{k.replace('.', '_')}": v.numpy() for k, v in state.items()}
    if extras:
        arrays["arg:data"] = np.zeros((1, 3, 8, 8), np.float32)
        arrays["arg:softmax_label"] = np.zeros((1, 8, 8), np.float32)
        arrays["arg:fc8_weight"] = np.ones((10, 4096, 1, 1), np.float32)
        arrays["arg:fc8_bias"] = np.ones(10, np.float32)
    return arrays


REFERENCE_OFFSETS = {
    "fcn32s": {"upscore": 19},
    "fcn16s": {"score_pool4c": 5, "upscore": 27},
    "fcn8s": {"score_pool4c": 5, "score_pool3c": 9, "upscore": 31},
}


def write_mx_symbol(path, arch: str, num_classes: int, *, adj: bool = True, offsets=None,
                    pooling: str | None = None, attr_key: str = "attrs") -> None:  # fmt: skip
    """An FCN symbol graph shaped like the fcn-xs example's (2015 style: adj=False,
    attr_key='param')."""
    nodes: list[dict] = []

    def node(op, name, inputs=(), **attrs):
        nodes.append({"op": op, "name": name, attr_key: {k: str(v) for k, v in attrs.items()},
                      "inputs": [[i, 0, 0] for i in inputs]})  # fmt: skip
        return len(nodes) - 1

    def variable(name):
        return node("null", name)

    def conv(name, x, filters, kernel, pad=0):
        w, b = variable(f"{name}_weight"), variable(f"{name}_bias")
        c = node("Convolution", name, (x, w, b), kernel=(kernel, kernel), pad=(pad, pad),
                 num_filter=filters)  # fmt: skip
        return node("Activation", f"relu{name[4:]}", (c,), act_type="relu")

    def deconv(name, x, stride):
        w = variable(f"{name}_weight")
        extra = {"adj": (stride - 1, stride - 1)} if adj else {}
        kernel, strides = (2 * stride, 2 * stride), (stride, stride)
        return node("Deconvolution", name, (x, w), kernel=kernel, stride=strides,
                    num_filter=num_classes, no_bias="True", **extra)  # fmt: skip

    def pool(name, x):
        extra = {"pooling_convention": pooling} if pooling else {}
        return node("Pooling", name, (x,), pool_type="max", kernel=(2, 2), stride=(2, 2), **extra)

    def score(name, x):
        w, b = variable(f"{name}_weight"), variable(f"{name}_bias")
        return node("Convolution", name, (x, w, b), kernel=(1, 1), num_filter=num_classes)

    offsets = offsets or REFERENCE_OFFSETS[arch]
    data = x = variable("data")
    taps = {}
    for block, (filters, n) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1):
        for i in range(1, n + 1):
            x = conv(f"conv{block}_{i}", x, filters, 3, 100 if (block, i) == (1, 1) else 1)
        x = taps[f"pool{block}"] = pool(f"pool{block}", x)
    x = node("Dropout", "drop6", (conv("fc6", x, 4096, 7),), p=0.5)
    x = node("Dropout", "drop7", (conv("fc7", x, 4096, 1),), p=0.5)
    x = score("score", x)
    for pool_name, up, crop in [
        ("pool4", "score2", "score_pool4c"),
        ("pool3", "score4", "score_pool3c"),
    ]:
        if crop not in offsets:
            break
        upsampled = deconv(up, x, 2)
        scored = score(f"score_{pool_name}", taps[pool_name])
        o = offsets[crop]
        cropped = node("Crop", crop, (scored, upsampled), num_args=2, offset=(o, o))
        x = node("elemwise_add", f"fuse_{pool_name}", (upsampled, cropped))
    final_stride = {"fcn32s": 32, "fcn16s": 16, "fcn8s": 8}[arch]
    big = deconv("bigscore", x, final_stride)
    o = offsets["upscore"]
    up = node("Crop", "upscore", (big, data), num_args=2, offset=(o, o))
    label = variable("softmax_label")
    node("SoftmaxOutput", "softmax", (up, label), multi_output="True")
    graph = {
        "nodes": nodes,
        "arg_nodes": [i for i, n in enumerate(nodes) if n["op"] == "null"],
        "heads": [[len(nodes) - 1, 0, 0]],
        "attrs": {"mxnet_version": ["int", 10901]},
    }
    with open(path, "w") as f:
        json.dump(graph, f)


# ---------------------------------------------------------------- Caffe .caffemodel


CAFFE_SUBSET = {
    # message: (field name, number, repeated, type, packed); numbers as in caffe.proto
    "BlobShape": [("dim", 1, True, "int64", True)],
    "BlobProto": [
        ("num", 1, False, "int32", False),
        ("channels", 2, False, "int32", False),
        ("height", 3, False, "int32", False),
        ("width", 4, False, "int32", False),
        ("data", 5, True, "float", True),
        ("shape", 7, False, "BlobShape", False),
        ("double_data", 8, True, "double", True),
    ],
    "LayerParameter": [
        ("name", 1, False, "string", False),
        ("type", 2, False, "string", False),
        ("blobs", 7, True, "BlobProto", False),
    ],
    "V1LayerParameter": [
        ("name", 4, False, "string", False),
        ("type", 5, False, "int32", False),
        ("blobs", 6, True, "BlobProto", False),
    ],
    "NetParameter": [
        ("name", 1, False, "string", False),
        ("layers", 2, True, "V1LayerParameter", False),
        ("layer", 100, True, "LayerParameter", False),
    ],
}


def _caffe_classes():
    """The caffe.proto messages we need, built as a protobuf descriptor."""
    T = descriptor_pb2.FieldDescriptorProto
    scalar = {"int32": T.TYPE_INT32, "int64": T.TYPE_INT64, "float": T.TYPE_FLOAT,
              "double": T.TYPE_DOUBLE, "string": T.TYPE_STRING}  # fmt: skip
    f = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe")
    for message, fields in CAFFE_SUBSET.items():
        m = f.message_type.add(name=message)
        for name, number, repeated, kind, packed in fields:
            label = T.LABEL_REPEATED if repeated else T.LABEL_OPTIONAL
            field = m.field.add(name=name, number=number, label=label)
            if kind in scalar:
                field.type = scalar[kind]
            else:
                field.type, field.type_name = T.TYPE_MESSAGE, f".caffe.{kind}"
            if packed:
                field.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{name}"))
        for name in CAFFE_SUBSET
    }


CAFFE = _caffe_classes()


def write_caffemodel(path, layers: dict[str, list[np.ndarray]], encoding: str = "layer",
                     legacy_shapes: bool = False) -> None:  # fmt: skip
    """A NetParameter with the given layers' blobs, plus a few layers without weights."""
    net = CAFFE["NetParameter"](name="FCN")
    container = net.layer if encoding == "layer" else net.layers
    relu = container.add(name="relu1_1")
    relu.type = "ReLU" if encoding == "layer" else 18
    for name, blobs in layers.items():
        layer = container.add(name=name)
        layer.type = "Convolution" if encoding == "layer" else 4
        for array in blobs:
            blob = layer.blobs.add()
            if legacy_shapes:
                dims = [1] * (4 - array.ndim) + list(array.shape)
                blob.num, blob.channels, blob.height, blob.width = dims
            else:
                blob.shape.dim.extend(array.shape)
            flat = array.astype(np.float32).ravel()
            for start in range(0, flat.size, 1 << 22):  # chunks bound the list's memory
                blob.data.extend(flat[start : start + (1 << 22)].tolist())
    with open(path, "wb") as f:
        f.write(net.SerializeToString())


FCNXS_TO_CAFFE = {"score": "score_fr", "score2": "upscore2", "score4": "upscore_pool4"}
CAFFE_FINAL = {"fcn32s": "upscore", "fcn16s": "upscore16", "fcn8s": "upscore8"}


def caffe_layers_from_state(state: dict[str, torch.Tensor], arch: str) -> dict[str, list]:
    layers: dict[str, list] = {}
    for key, tensor in state.items():
        layer = key.rsplit(".", 1)[0]
        name = CAFFE_FINAL[arch] if layer == "bigscore" else FCNXS_TO_CAFFE.get(layer, layer)
        layers.setdefault(name, []).append(tensor.numpy())
    return layers


# ---------------------------------------------------------------- torchvision

TV_FEATURES = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def torchvision_vgg16_state(fcn_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's vgg16 layout (features.N, classifier.N with fc as matrices)."""
    convs = [
        k.rsplit(".", 1)[0] for k in fcn_state if k.startswith("conv") and k.endswith("weight")
    ]
    state = {}
    for index, conv in zip(TV_FEATURES, convs, strict=True):
        state[f"features.{index}.weight"] = fcn_state[f"{conv}.weight"]
        state[f"features.{index}.bias"] = fcn_state[f"{conv}.bias"]
    state["classifier.0.weight"] = fcn_state["fc6.weight"].reshape(4096, 25088)
    state["classifier.0.bias"] = fcn_state["fc6.bias"]
    state["classifier.3.weight"] = fcn_state["fc7.weight"].reshape(4096, 4096)
    state["classifier.3.bias"] = fcn_state["fc7.bias"]
    state["classifier.6.weight"] = torch.randn(1000, 4096)
    state["classifier.6.bias"] = torch.randn(1000)
    return state
