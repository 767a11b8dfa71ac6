"""Guides that regularize amortized inference: the denoising guide (DVAE / DIWAE, partial denoising)."""

from .denoising_guide import DenoisingGuide

__all__ = ["DenoisingGuide"]
__all__[:] = sorted(set(__all__))
