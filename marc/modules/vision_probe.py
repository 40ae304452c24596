"""VisionProbe: an auxiliary dense loss that teaches a from-scratch vision tower what it sees.

The teacher of the embedded default learns its vision tower from scratch, from the answers
alone; that signal is weak and slow (README, Results). This probe puts linear heads on the
tower's output tokens (before compression) that classify, for every visual token, the
colour, shape and motion of the object in that token's cell (or "none") and the
background colour and pattern, from the generator's ground truth (``sample["events"]``,
objects with their ``cell``). It plays the role of a pretrained vision encoder's
perception. The heads are training aids: they are not part of the exported model, which
stays a plain Qwen2.5-VL.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from marc.data.synthetic import CELL_CENTRES
from marc.vocabulary import (
    BACKGROUND_COLOURS,
    BACKGROUND_PATTERNS,
    DIRECTIONS,
    OBJECT_COLOURS,
    SHAPES,
)

# Per-token targets: (field, its names); object fields have an extra class 0, "no object".
OBJECT_FIELDS = (("colour", OBJECT_COLOURS), ("shape", SHAPES), ("direction", DIRECTIONS))
SCENE_FIELDS = (("background", BACKGROUND_COLOURS), ("pattern", BACKGROUND_PATTERNS))
FIELDS = OBJECT_FIELDS + SCENE_FIELDS


class VisionProbe(nn.Module):
    """Linear heads over visual tokens ``[..., width]``, one per field of :data:`FIELDS`."""

    def __init__(self, width: int):
        super().__init__()
        self.heads = nn.ModuleDict(
            {
                name: nn.Linear(width, len(names) + (name in dict(OBJECT_FIELDS)))
                for name, names in FIELDS
            }
        )

    @staticmethod
    def targets(
        events: list[dict],
        spans: list[tuple[int, int]],
        grid: tuple[int, int, int],
        start_frame: int = 0,
        frames_per_group: int = 2,
    ) -> torch.Tensor | None:
        """Class targets ``[T, H*W, len(FIELDS)]`` of one video (None without ground truth).

        ``spans`` are the events' frame spans in the full video; the encoded frames start
        at ``start_frame`` of it (a clip), temporal group ``g`` at frame
        ``start_frame + g * frames_per_group``.
        """
        t, h, w = grid
        if not events or not spans or any(not e or e.get("background") is None for e in events):
            return None
        targets = torch.zeros(t, h * w, len(FIELDS), dtype=torch.long)
        for group in range(t):
            frame = start_frame + group * frames_per_group
            event = next((i for i, (a, b) in enumerate(spans) if a <= frame < b), len(spans) - 1)
            attributes = events[event]
            for k, (name, names) in enumerate(SCENE_FIELDS, start=len(OBJECT_FIELDS)):
                targets[group, :, k] = names.index(attributes[name])
            for obj in attributes.get("objects") or []:
                if "cell" not in obj:
                    return None  # annotations written before cells were recorded
                x, y = CELL_CENTRES[obj["cell"]]
                token = int(y * h) * w + int(x * w)
                for k, (name, names) in enumerate(OBJECT_FIELDS):
                    targets[group, token, k] = 1 + names.index(obj[name])
        return targets

    def loss(
        self, tokens: list[torch.Tensor], targets: list[torch.Tensor | None]
    ) -> torch.Tensor | None:
        """Mean cross-entropy over fields and tokens of the videos that have targets."""
        pairs = [(x, y) for x, y in zip(tokens, targets) if y is not None]
        if not pairs:
            return None
        x = torch.cat([p[0].reshape(-1, p[0].shape[-1]) for p in pairs]).float()
        y = torch.cat([p[1].reshape(-1, len(FIELDS)) for p in pairs]).to(x.device)
        losses = [
            F.cross_entropy(self.heads[name](x), y[:, k]) for k, (name, _) in enumerate(FIELDS)
        ]
        return sum(losses) / len(losses)
