"""fcnxs: Fully Convolutional Networks (FCN-32s/16s/8s on VGG16) for semantic segmentation.

The public API::

    import fcnxs
    model = fcnxs.build_model("fcn8s", num_classes=21)   # fresh weights
    model = fcnxs.load_model("fcn8s.safetensors")         # or MXNet, Caffe files
    model, report = fcnxs.start_model("fcn32s", "vgg16.caffemodel")  # staged init
    labels = fcnxs.segment(model, pil_image_or_array)     # H×W class indices
    labels, scores = fcnxs.segment(model, image, return_scores=True)
    fcnxs.save_model(model, "out.safetensors")
"""

from fcnxs.core.errors import FcnxsError
from fcnxs.inference.api import segment, segment_paths
from fcnxs.model.config import ModelConfig, Preprocessing, Semantics
from fcnxs.model.fcn import FCN
from fcnxs.model.initialisation import TransferReport, build_model, transfer
from fcnxs.model.modelfile import save_model
from fcnxs.model.sources import load_model, start_model

__version__ = "0.1.0"

__all__ = [
    "FCN",
    "FcnxsError",
    "ModelConfig",
    "Preprocessing",
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
