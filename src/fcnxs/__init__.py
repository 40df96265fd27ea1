"""fcnxs: Fully Convolutional Networks (FCN-32s/16s/8s on VGG16) for semantic segmentation.

The public API::

    import fcnxs
    model = fcnxs.build_model("fcn8s", num_classes=21)   # fresh weights
    model = fcnxs.load_model("fcn8s.safetensors")         # or MXNet, Caffe files
    model = fcnxs.load_model("fcn8s-voc")                 # a registry name: fetched once
    model, report = fcnxs.start_model("fcn32s", "vgg16.caffemodel")  # staged init
    labels = fcnxs.segment(model, pil_image_or_array)     # H×W class indices
    labels, scores = fcnxs.segment(model, image, return_scores=True)
    segmenter = fcnxs.Segmenter(model, precision="bf16")  # many images: keeps its caches
    scores = segmenter.scores("photo.jpg")
    fcnxs.Segmenter(model, tta=fcnxs.TTA(flip=True, scales=(0.75, 1, 1.25)))  # averaged views
    fcnxs.save_model(model, "out.safetensors")
    fcnxs.ARCHS                                           # ("fcn32s", "fcn16s", "fcn8s")

The package's folders are its layers, bottom to top: core, formats, model, data,
inference, evaluation, training, apps, then cli (docs/design.md §0).
"""

from fcnxs.core.errors import FcnxsError
from fcnxs.inference.api import segment, segment_paths
from fcnxs.inference.segmenter import Segmenter
from fcnxs.inference.tta import TTA
from fcnxs.model.architecture import ARCHS
from fcnxs.model.config import ModelConfig, Preprocessing, Semantics
from fcnxs.model.fcn import FCN
from fcnxs.model.initialisation import TransferReport, build_model, transfer
from fcnxs.model.loading import load_model, start_model
from fcnxs.model.modelfile import save_model

__version__ = "0.1.0"

__all__ = [
    "ARCHS",
    "FCN",
    "TTA",
    "FcnxsError",
    "ModelConfig",
    "Preprocessing",
    "Segmenter",
    "Semantics",
    "TransferReport",
    "build_model",
    "load_model",
    "save_model",
    "segment",
    "segment_paths",
    "start_model",
    "transfer",
]
