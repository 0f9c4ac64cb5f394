"""The torchvision classification zoo by name: each model's native input size.

Shared by the importer (``annette.importers.zoo``: ONNX export and cache) and the torch backend (which runs
the modules natively); neither imports the other.
"""

from __future__ import annotations

# name -> native input size (square, from the torchvision weights' crop size; ViT-H/14 is built with its
# constructor default of 224, since weights=None builds that architecture)
TORCHVISION_MODELS: dict[str, int] = {
    "alexnet": 224,
    "convnext_tiny": 224, "convnext_small": 224, "convnext_base": 224, "convnext_large": 224,
    "densenet121": 224, "densenet161": 224, "densenet169": 224, "densenet201": 224,
    "efficientnet_b0": 224, "efficientnet_b1": 240, "efficientnet_b2": 288, "efficientnet_b3": 300,
    "efficientnet_b4": 380, "efficientnet_b5": 456, "efficientnet_b6": 528, "efficientnet_b7": 600,
    "efficientnet_v2_s": 384, "efficientnet_v2_m": 480, "efficientnet_v2_l": 480,
    "googlenet": 224,
    "inception_v3": 299,
    "maxvit_t": 224,
    "mnasnet0_5": 224, "mnasnet0_75": 224, "mnasnet1_0": 224, "mnasnet1_3": 224,
    "mobilenet_v2": 224, "mobilenet_v3_small": 224, "mobilenet_v3_large": 224,
    "regnet_x_400mf": 224, "regnet_x_800mf": 224, "regnet_x_1_6gf": 224, "regnet_x_3_2gf": 224,
    "regnet_x_8gf": 224, "regnet_x_16gf": 224, "regnet_x_32gf": 224,
    "regnet_y_400mf": 224, "regnet_y_800mf": 224, "regnet_y_1_6gf": 224, "regnet_y_3_2gf": 224,
    "regnet_y_8gf": 224, "regnet_y_16gf": 224, "regnet_y_32gf": 224, "regnet_y_128gf": 384,
    "resnet18": 224, "resnet34": 224, "resnet50": 224, "resnet101": 224, "resnet152": 224,
    "resnext50_32x4d": 224, "resnext101_32x8d": 224, "resnext101_64x4d": 224,
    "wide_resnet50_2": 224, "wide_resnet101_2": 224,
    "shufflenet_v2_x0_5": 224, "shufflenet_v2_x1_0": 224, "shufflenet_v2_x1_5": 224, "shufflenet_v2_x2_0": 224,
    "squeezenet1_0": 224, "squeezenet1_1": 224,
    "swin_t": 224, "swin_s": 224, "swin_b": 224,
    "swin_v2_t": 256, "swin_v2_s": 256, "swin_v2_b": 256,
    "vgg11": 224, "vgg11_bn": 224, "vgg13": 224, "vgg13_bn": 224, "vgg16": 224, "vgg16_bn": 224,
    "vgg19": 224, "vgg19_bn": 224,
    "vit_b_16": 224, "vit_b_32": 224, "vit_l_16": 224, "vit_l_32": 224, "vit_h_14": 224,
}
