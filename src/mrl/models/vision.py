"""Vision backbones that map images to a ``D``-dim embedding.

A registry (name -> factory) instead of an if-chain: ``create_backbone("small_resnet", 512)``.
``small_resnet`` is a compact residual CNN for 28x28 grayscale images; ``torchvision:<name>``
wraps a torchvision ResNet (when torchvision is installed) with a projection to ``D``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from mrl.errors import MRLError


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm and an identity (or 1x1 strided) shortcut.

    Shape: ``[N, c_in, H, W] -> [N, c_out, H/stride, W/stride]``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """Residual CNN for small grayscale images with a ``D``-dim embedding.

    stem (3x3, ``width``) -> stage 1 (``width``, stride 2) -> stage 2 (``2*width``, stride 2)
    -> 1x1 conv to ``embed_dim`` + BN + ReLU -> global average pool. The embedding is a pooled
    post-ReLU feature map (like a ResNet's penultimate layer), so no prefix is privileged a priori.

    Args:
        embed_dim: ``D``.
        width: channels of the first stage.
        in_channels: 1 for grayscale.

    Shape:
        - Input: ``[N, in_channels, H, W]`` float (e.g. ``[N, 1, 28, 28]``).
        - Output: ``[N, embed_dim]``.
    """

    def __init__(self, embed_dim: int = 512, width: int = 32, in_channels: int = 1) -> None:
        super().__init__()
        if embed_dim <= 0 or width <= 0:
            raise MRLError(f"embed_dim and width must be positive, got {embed_dim} and {width}.")
        self.embed_dim = embed_dim
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.stage1 = BasicBlock(width, width, stride=2)
        self.stage2 = BasicBlock(width, 2 * width, stride=2)
        self.project = nn.Sequential(nn.Conv2d(2 * width, embed_dim, 1, bias=False), nn.BatchNorm2d(embed_dim), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.stage1(self.stem(x)))
        return self.pool(self.project(x)).flatten(1)


class TorchvisionBackbone(nn.Module):
    """A torchvision ResNet trunk (fc removed) followed by a linear projection to ``embed_dim``.

    Grayscale input is repeated to 3 channels. Shape: ``[N, C, H, W] -> [N, embed_dim]``.
    """

    def __init__(self, name: str, embed_dim: int) -> None:
        super().__init__()
        try:
            import torchvision.models as tvm
        except Exception as exc:  # torchvision missing or built against another torch
            raise MRLError(f"backbone 'torchvision:{name}' needs a working torchvision install ({exc}); use 'small_resnet' instead.") from exc
        if not hasattr(tvm, name):
            raise MRLError(f"torchvision has no model {name!r}; try e.g. 'torchvision:resnet18'.")
        trunk = getattr(tvm, name)(weights=None)
        feat = trunk.fc.in_features
        trunk.fc = nn.Identity()
        self.trunk = trunk
        self.project = nn.Linear(feat, embed_dim)
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.project(self.trunk(x))


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "small_resnet": SmallResNet,
}


def create_backbone(name: str, embed_dim: int, **kwargs: object) -> nn.Module:
    """Build a backbone by registry name (``small_resnet``) or ``torchvision:<resnet name>``."""
    if name.startswith("torchvision:"):
        return TorchvisionBackbone(name.split(":", 1)[1], embed_dim)
    if name not in BACKBONES:
        raise MRLError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)} or 'torchvision:<name>'.")
    return BACKBONES[name](embed_dim=embed_dim, **kwargs)
