"""Image augmentation on batched tensors, on the training device (no per-sample loop).

``crop``: pad each side by ``padding`` zeros, then cut a random window of the original
size per sample; ``flip``: mirror half of the samples left to right; ``crop_flip``: both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from kdsweep.study.schema import AUGMENTATIONS

Augment = Callable[[torch.Tensor], torch.Tensor]


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """A random ``H x W`` window of each zero-padded image of a (B, C, H, W) batch."""
    batch, _, height, width = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (batch, 1), device=x.device, generator=generator)
    left = torch.randint(0, 2 * padding + 1, (batch, 1), device=x.device, generator=generator)
    rows = top + torch.arange(height, device=x.device)  # (B, H)
    cols = left + torch.arange(width, device=x.device)  # (B, W)
    samples = torch.arange(batch, device=x.device)[:, None, None]
    # Advanced indexing puts the indexed dimensions first: (B, H, W, C). The result is made
    # contiguous: convolutions are faster on it, and torch's CPU convolution backward was
    # seen to crash on this stride pattern with few channels.
    crops = padded.permute(0, 2, 3, 1)[samples, rows[:, :, None], cols[:, None, :]]
    return crops.permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of a (B, C, H, W) batch mirrored left to right with probability 1/2."""
    flip = torch.rand(len(x), device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def make_augment(name: str, padding: int, seed: int, device: torch.device) -> Augment | None:
    """The augmentation ``name`` with its own seeded generator on ``device``, or ``None``."""
    if name == "none":
        return None
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation '{name}' (one of {', '.join(AUGMENTATIONS)})")
    generator = torch.Generator(device=device).manual_seed(seed)

    def augment(x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(
                f"augmentation '{name}' needs image batches (B, C, H, W), got {tuple(x.shape)}"
            )
        if name in ("crop", "crop_flip") and padding > 0:
            x = random_crop(x, padding, generator)
        if name in ("flip", "crop_flip"):
            x = random_flip(x, generator)
        return x

    return augment
