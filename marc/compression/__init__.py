"""Visual-token compressors: MARC's memory-aware merge and the baselines it is compared with.

Group-level (whole temporal groups kept or merged): ``MemoryAwareMerge``, ``Identity``,
``UniformFrames``, ``TemporalMeanPool``, ``ToMe``, ``RandomDrop``. Token-level (single
tokens at their ``(t, h, w)``, exactly ``budget.max_tokens(grid)`` of them): ``VidCom2``,
``FastVID``, ``VisionZip``, ``DyCoke``, ``TokenToMe``.
"""

from marc.compression.base import Budget, CompressedVideo, Span, TokenCompressor
from marc.compression.baselines import Identity, RandomDrop, TemporalMeanPool, UniformFrames
from marc.compression.dycoke import DyCoke
from marc.compression.fastvid import FastVID
from marc.compression.memory_aware import MemoryAwareMerge
from marc.compression.token_tome import TokenToMe
from marc.compression.tome import ToMe
from marc.compression.vidcom2 import VidCom2
from marc.compression.visionzip import VisionZip

# The training-free compressors MARC's student is compared with at one budget (by class name).
TRAINING_FREE = (
    "MemoryAwareMerge",
    "UniformFrames",
    "TemporalMeanPool",
    "ToMe",
    "RandomDrop",
    "VidCom2",
    "FastVID",
    "VisionZip",
    "DyCoke",
    "TokenToMe",
)


def build_compressor(name: str) -> TokenCompressor:
    """A compressor of this package by class name, with its default settings."""
    if name not in __all__ or name in ("Budget", "CompressedVideo", "Span", "TokenCompressor"):
        raise ValueError(f"no compressor named {name!r} in marc.compression")
    return globals()[name]()


__all__ = [
    "TRAINING_FREE",
    "build_compressor",
    "Budget",
    "CompressedVideo",
    "DyCoke",
    "FastVID",
    "Identity",
    "MemoryAwareMerge",
    "RandomDrop",
    "Span",
    "TemporalMeanPool",
    "ToMe",
    "TokenCompressor",
    "TokenToMe",
    "UniformFrames",
    "VidCom2",
    "VisionZip",
]
