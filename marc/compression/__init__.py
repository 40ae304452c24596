"""Visual-token compressors: MARC's memory-aware merge and the baselines it is compared with."""

from marc.compression.base import Budget, CompressedVideo, Span, TokenCompressor
from marc.compression.baselines import Identity, RandomDrop, TemporalMeanPool, UniformFrames
from marc.compression.dycoke import DyCoke
from marc.compression.fastvid import FastVID
from marc.compression.memory_aware import MemoryAwareMerge
from marc.compression.tome import ToMe
from marc.compression.vidcom2 import VidCom2
from marc.compression.visionzip import VisionZip

__all__ = [
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
    "UniformFrames",
    "VidCom2",
    "VisionZip",
]
