"""On-the-fly batch augmentation in torch (CPU or GPU), aimed at generalising across clinics and cameras.

Geometry: any rotation (lesions have no up), flips, zoom/crop and shift. Colour: brightness, contrast,
saturation, per-channel gain (a residual colour cast after colour constancy), gamma. Camera: blur and
resolution loss. Dermatoscope: a circular field with black corners, black bars. All of it works on uint8 NHWC
batches as cached by training and returns NCHW floats in [0, 1]. `AUGMENTATIONS` names the presets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from skinscan.training.config import AUGMENTATION_NAMES


@dataclass(frozen=True)
class AugmentConfig:
    rotate: bool = True  # any angle
    flip: bool = True  # horizontal and vertical
    scale: tuple[float, float] = (0.75, 1.35)  # zoom factor range (>1 zooms in, i.e. crops)
    shift: float = 0.08  # translation, as a fraction of the side
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.3
    channel_gain: float = 0.08  # per-channel multiplicative jitter
    gamma: float = 0.2
    blur_p: float = 0.15  # probability of a mild blur
    lowres_p: float = 0.15  # probability of a down-up resampling (a weaker camera)
    vignette_p: float = 0.0  # probability of a dermatoscope's circular field (black outside a random circle)
    bars_p: float = 0.0  # probability of black bars on two opposite sides (framing, scanned slides)


# "standard": the recipe of models 1.x. "clinic": what varies between clinics, harder: zoom out to a small lesion
# in a large frame, stronger colour and lighting, more camera loss, dermatoscope circles and black bars.
AUGMENTATIONS = {
    "standard": AugmentConfig(),
    "clinic": AugmentConfig(scale=(0.6, 1.35), shift=0.12, brightness=0.3, contrast=0.3, saturation=0.35,
                            channel_gain=0.12, gamma=0.25, blur_p=0.25, lowres_p=0.25, vignette_p=0.2, bars_p=0.1),
}  # fmt: skip
assert tuple(AUGMENTATIONS) == AUGMENTATION_NAMES  # the config checks names without importing torch


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def augment_batch(pixels: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """uint8 NxHxWx3 → augmented float NxCxHxW in [0, 1]."""
    x = pixels.permute(0, 3, 1, 2).float().div_(255.0)
    n, _, h, w = x.shape
    dev = x.device
    angle = _uniform(n, 0, 2 * math.pi, gen, dev) if cfg.rotate else torch.zeros(n, device=dev)
    scale = torch.exp(_uniform(n, math.log(cfg.scale[0]), math.log(cfg.scale[1]), gen, dev))
    flip_x = torch.where(torch.rand(n, generator=gen, device=dev) < 0.5, -1.0, 1.0) if cfg.flip else 1.0
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = cos * flip_x
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * flip_x
    theta[:, 1, 1] = cos
    theta[:, :, 2] = _uniform(2 * n, -cfg.shift, cfg.shift, gen, dev).view(n, 2) * 2
    grid = F.affine_grid(theta, [n, 3, h, w], align_corners=False)
    # reflection keeps the skin texture at the borders instead of black corners that a model could key on
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def per_image(spread: float) -> torch.Tensor:
        return _uniform(n, 1 - spread, 1 + spread, gen, dev).view(n, 1, 1, 1)

    x = x * per_image(cfg.brightness)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * per_image(cfg.contrast) + mean
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * per_image(cfg.saturation) + grey
    gains = _uniform(3 * n, 1 - cfg.channel_gain, 1 + cfg.channel_gain, gen, dev).view(n, 3, 1, 1)
    x = (x * gains).clamp_(0, 1)
    x = x.pow(per_image(cfg.gamma))

    if cfg.blur_p > 0:
        pick = torch.rand(n, generator=gen, device=dev) < cfg.blur_p
        if pick.any():
            kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=dev)
            kernel = (kernel[:, None] * kernel[None, :]) / 256.0
            weight = kernel.expand(3, 1, 5, 5).contiguous()
            x[pick] = F.conv2d(F.pad(x[pick], [2, 2, 2, 2], mode="reflect"), weight, groups=3)
    if cfg.lowres_p > 0:
        pick = torch.rand(n, generator=gen, device=dev) < cfg.lowres_p
        if pick.any():
            small = F.interpolate(x[pick], scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
            x[pick] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    if cfg.vignette_p > 0:
        pick = (torch.rand(n, generator=gen, device=dev) < cfg.vignette_p).view(n, 1, 1, 1)
        radius = _uniform(n, 0.85, 1.15, gen, dev).view(n, 1, 1)  # of the half side: corners to half the frame
        ys = torch.linspace(-1, 1, h, device=dev).view(1, h, 1)
        xs = torch.linspace(-1, 1, w, device=dev).view(1, 1, w)
        outside = ((ys**2 + xs**2).sqrt() > radius).unsqueeze(1)
        x = torch.where(pick & outside, torch.zeros((), device=dev), x)
    if cfg.bars_p > 0:
        pick = (torch.rand(n, generator=gen, device=dev) < cfg.bars_p).view(n, 1, 1)
        depth = (_uniform(n, 0.04, 0.15, gen, dev) * h).view(n, 1, 1)
        rows = torch.arange(h, device=dev).view(1, h, 1).float()
        cols = torch.arange(w, device=dev).view(1, 1, w).float()
        across = (torch.rand(n, generator=gen, device=dev) < 0.5).view(n, 1, 1)
        along = torch.where(across, rows.expand(n, h, w), cols.expand(n, h, w))
        bar = (along < depth) | (along >= (h - depth))
        x = torch.where((pick & bar).unsqueeze(1), torch.zeros((), device=dev), x)
    return x.clamp_(0, 1)


def normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s
