"""Vision backbones that map images to a ``D``-dim embedding, and their registry.

One source of truth, in the style of timm's ``@register_model``: every backbone is registered with
:func:`register_backbone` together with what the rest of mrl needs to know about it without building
it (native embedding width, smallest image it accepts, which recipe options it takes).
``create_backbone("small_resnet")`` builds one; :func:`list_backbones` lists them.

* ``small_resnet``: a compact residual CNN for small images (28x28 Fashion-MNIST), width ``D``.
* ``torchvision:resnet18`` ... ``torchvision:resnet152``: torchvision's ResNets without their ``fc``;
  the embedding is the pooled penultimate layer at its native width (512 for ResNet-18/34, 2048 for
  ResNet-50 and up) unless ``embed_dim`` asks for a linear projection to another width.

Weights are never downloaded: :func:`load_backbone_weights` reads a local file.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mrl.errors import MRLError
from mrl.torchvision_compat import import_torchvision


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

    def __init__(self, embed_dim: int | None = 512, width: int = 32, in_channels: int = 1) -> None:
        super().__init__()
        embed_dim = 512 if embed_dim is None else embed_dim
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


@dataclass(frozen=True)
class BackboneSpec:
    """What mrl knows about a registered backbone without building it.

    ``factory(embed_dim, in_channels, **options)`` returns a module with an ``embed_dim`` attribute
    mapping ``[N, in_channels, H, W]`` to ``[N, embed_dim]``; ``embed_dim=None`` means
    ``native_width``. ``options`` names the recipe fields the factory also takes (e.g. ``width``).
    """

    name: str
    factory: Callable[..., nn.Module]
    native_width: int
    min_image_size: int
    options: tuple[str, ...] = ()
    summary: str = ""


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(name: str, *, native_width: int, min_image_size: int, options: tuple[str, ...] = (), summary: str = "") -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``factory`` under ``name`` (the value of ``backbone:`` in a recipe)."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        BACKBONES[name] = BackboneSpec(name, factory, native_width, min_image_size, options, summary)
        return factory

    return wrap


def get_backbone_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise MRLError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}.")
    return BACKBONES[name]


def list_backbones() -> list[str]:
    return sorted(BACKBONES)


@register_backbone("small_resnet", native_width=512, min_image_size=8, options=("width",), summary="compact residual CNN for small images (two stride-2 stages)")
def small_resnet(embed_dim: int | None = None, in_channels: int = 1, width: int = 16) -> nn.Module:
    return SmallResNet(embed_dim=embed_dim, width=width, in_channels=in_channels)


class TorchvisionBackbone(nn.Module):
    """A torchvision ResNet trunk (``fc`` removed), optionally followed by a projection to ``embed_dim``.

    The embedding is the globally pooled output of the last stage (post-ReLU), at the trunk's native
    width unless ``embed_dim`` differs from it, in which case a linear layer projects to
    ``embed_dim``. Single-channel input is repeated to 3 channels (so RGB weights still apply).
    Weights start random (``weights=None``); see :func:`load_backbone_weights`.

    Shape: ``[N, 1 or 3, H, W] -> [N, embed_dim]``.
    """

    def __init__(self, name: str, embed_dim: int | None = None, in_channels: int = 3) -> None:
        super().__init__()
        import_torchvision()
        tvm = importlib.import_module("torchvision.models")
        if not hasattr(tvm, name):
            raise MRLError(f"torchvision has no model {name!r}; use one of {list_backbones()}.")
        if in_channels not in (1, 3):
            raise MRLError(f"torchvision:{name} takes 1- or 3-channel images, got {in_channels} channels.")
        trunk = getattr(tvm, name)(weights=None)
        native = trunk.fc.in_features
        trunk.fc = nn.Identity()
        self.trunk = trunk
        self.native_width = native
        self.embed_dim = native if embed_dim is None else embed_dim
        self.project: nn.Module = nn.Identity() if self.embed_dim == native else nn.Linear(native, self.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.project(self.trunk(x))


_TORCHVISION_RESNETS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048, "wide_resnet50_2": 2048, "resnext50_32x4d": 2048}
for _name, _width in _TORCHVISION_RESNETS.items():
    # A ResNet downsamples by 32 (stem stride 2, max-pool, three stride-2 stages): 32 px is the
    # smallest input whose last stage still sees one full pixel of a real receptive field.
    register_backbone(f"torchvision:{_name}", native_width=_width, min_image_size=32, summary=f"torchvision {_name} trunk, pooled penultimate layer")(functools.partial(TorchvisionBackbone, _name))


def create_backbone(name: str, embed_dim: int | None = None, *, in_channels: int = 1, **options: object) -> nn.Module:
    """Build a registered backbone. ``embed_dim=None``: its native width. ``options``: e.g. ``width``;
    options the backbone does not take are ignored (so one recipe can switch backbones)."""
    spec = get_backbone_spec(name)
    if embed_dim is not None and embed_dim <= 0:
        raise MRLError(f"embed_dim must be positive or null (the backbone's native width), got {embed_dim}.")
    kwargs = {k: v for k, v in options.items() if k in spec.options and v is not None}
    return spec.factory(embed_dim=embed_dim, in_channels=in_channels, **kwargs)


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file: ``.safetensors``, or a torch file read with ``weights_only=True``
    (a plain state dict, or one under a ``state_dict``/``model`` key; a DDP ``module.`` prefix is dropped)."""
    p = Path(path)
    if not p.is_file():
        raise MRLError(f"weights file {p} does not exist; give a local .safetensors or .pth file (nothing is downloaded).")
    if p.suffix == ".safetensors":
        from mrl.io import load_safetensors

        tensors, _ = load_safetensors(p)
    else:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors come in many types
            raise MRLError(f"cannot read {p} as torch weights with weights_only=True ({type(exc).__name__}); save a plain state_dict, or convert it to .safetensors.") from exc
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            obj = obj.get("state_dict", obj.get("model", obj))
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise MRLError(f"{p} does not hold a state dict of tensors; save model.state_dict() (or a .safetensors file).")
        tensors = dict(obj)
    return {k.removeprefix("module."): v for k, v in tensors.items()}


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> list[str]:
    """Load a local weights file into ``backbone`` (for torchvision backbones: into the trunk, in
    torchvision's own key names, so a torchvision ``resnet50-*.pth`` file fits; its ``fc.*`` classifier
    is ignored). Returns the ignored keys.

    Raises:
        MRLError: one line naming every tensor whose shape differs, and missing/unexpected keys.
    """
    target = getattr(backbone, "trunk", backbone)
    tensors = read_weights_file(path)
    ignored = sorted(k for k in tensors if k.startswith("fc.") and hasattr(backbone, "trunk"))
    tensors = {k: v for k, v in tensors.items() if k not in ignored}
    own = target.state_dict()
    mismatched = [f"{k} (file {list(v.shape)} vs model {list(own[k].shape)})" for k, v in tensors.items() if k in own and v.shape != own[k].shape]
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    if mismatched or missing or unexpected:
        parts = []
        if mismatched:
            parts.append(f"shape mismatch: {', '.join(_clip(mismatched))}")
        if missing:
            parts.append(f"missing: {', '.join(_clip(missing))}")
        if unexpected:
            parts.append(f"unexpected: {', '.join(_clip(unexpected))}")
        raise MRLError(f"weights file {path} does not fit this backbone ({'; '.join(parts)}); use weights of the same architecture (e.g. a torchvision state_dict of that ResNet).")
    target.load_state_dict(tensors)
    return ignored


def _clip(names: list[str], keep: int = 6) -> list[str]:
    return names[:keep] + ([f"... {len(names) - keep} more"] if len(names) > keep else [])
