"""Region-crop CNN backbones (reference §2.2, the front-end of STD).

``ResNet50`` reproduces torchvision's ResNet-50 (v1.5: stride on the 3x3 conv) with the same
parameter names (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0`` ...), so the
published ImageNet weights load from a local state-dict file with
``load_imagenet_weights``; torchvision itself is not a dependency. The classifier ``fc`` is
removed, as in the paper, giving a 2048-d pooled feature. Grayscale crops are replicated to three
channels before the first convolution, as the paper's loader does (§1.6).

``SmallCNN`` is a few-layer network for CPU work (tests, the synthetic demo); it is not in the
paper.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from torch import nn

from dipro.config import DiproConfig


class Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck block (1x1, 3x3 with stride, 1x1; expansion 4)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * self.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * self.expansion),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet-50 without ``fc``; input [M, C, H, W] in [0, 1], output [M, 2048]."""

    out_dim = 2048

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        layers: list[nn.Sequential] = []
        for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            stage = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * Bottleneck.expansion
            stage += [Bottleneck(inplanes, planes) for _ in range(blocks - 1)]
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation (Kaiming fan-out convs, unit BN)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # §1.6: grayscale replicated to RGB
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


class SmallCNN(nn.Module):
    """Three strided conv stages + global average pooling; [M, C, H, W] -> [M, 4 * width]."""

    def __init__(self, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_dim = 4 * width
        chans = (in_channels, width, 2 * width, 4 * width)
        stages: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(chans):
            stages += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


def build_backbone(config: DiproConfig) -> ResNet50 | SmallCNN:
    """Return the backbone named by ``config.backbone``.

    Args:
        config: Network configuration.
    """
    if config.backbone == "resnet50":
        return ResNet50(config.in_channels)
    return SmallCNN(config.in_channels, config.small_cnn_width)


def backbone_input_channels(config: DiproConfig) -> int:
    """Channels the backbone's first convolution consumes (ResNet-50 always sees RGB)."""
    return 3 if config.backbone == "resnet50" else config.in_channels


def load_imagenet_weights(backbone: ResNet50, path: Path) -> list[str]:
    """Load a torchvision ``resnet50`` ImageNet state dict from a local file.

    The classifier (``fc.*``) keys are dropped. Any other missing or unexpected key raises,
    so a file with another layout cannot load silently.

    Args:
        backbone: The network to fill.
        path: A ``torch.save``-d state dict (e.g. ``resnet50-11ad3fa6.pth``).

    Returns:
        The keys that were ignored (the classifier's).
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    ignored = [k for k in state if k.startswith("fc.")]
    for key in ignored:
        del state[key]
    backbone.load_state_dict(state, strict=True)
    return ignored
