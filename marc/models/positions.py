"""M-RoPE position ids of a VideoVLM batch, built from each visual token's ``(t, h, w)``.

Qwen2.5-VL's language model rotates every token by three position ids (temporal, height,
width). The rule is transformers' own ``Qwen2_5_VLModel.get_rope_index`` (5.24), applied
to tokens at explicit positions instead of a whole grid:

- text: the same id on all three axes, counting up by one per token from 0;
- a video that starts after ``s`` text positions: token ``(t, h, w)`` gets
  ``(s + floor(t * time_interval), s + h, s + w)``, with ``time_interval =
  tokens_per_second * seconds_per_group`` (VideoVLM passes one second per group, the value
  transformers assumes when no ``second_per_grid_ts`` is given);
- text after that video continues at ``s + max(H, W)`` of the video's grid ``(T, H, W)``:
  after its spatial extent, whatever its temporal ids reach (transformers 5.24 moves the
  text position by ``max(H, W)`` per video; its 4.x releases, like Qwen's own code,
  continued after the largest id of the video instead);
- padding (attention mask 0) gets 0 on every axis.

Grid-shaped videos use their grid's positions (``CompressedVideo.token_positions``), so the
result equals ``get_rope_index`` for them (tests/models/test_vlm_positions.py checks it);
token-level videos use their tokens' positions on the input grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from marc.compression.base import CompressedVideo

TEXT_TOKEN_TYPE, VIDEO_TOKEN_TYPE = 0, 2


def video_position_ids(
    video: CompressedVideo, start: int, time_interval: float, device: torch.device | None = None
) -> torch.Tensor:
    """Position ids ``[3, N]`` of a video's tokens, for a video placed after ``start`` ids."""
    t, h, w = video.token_positions().to(device).unbind(-1)
    # Scaled before the offset and truncated as transformers does (floor for t >= 0).
    temporal = (t * time_interval).long() + start
    return torch.stack([temporal, h + start, w + start])


def row_position_ids(
    token_types: torch.Tensor, video: CompressedVideo | None, time_interval: float
) -> torch.Tensor:
    """Position ids ``[3, L]`` of one unpadded row: text, one run of ``video``'s tokens, text.

    ``token_types`` ``[L]`` holds ``VIDEO_TOKEN_TYPE`` on the video's placeholders and
    ``TEXT_TOKEN_TYPE`` elsewhere; the run must hold exactly ``video.num_tokens`` of them.
    A row without a video (None: a text-only prompt) counts up on all three axes.
    """
    if video is None:
        if bool((token_types == VIDEO_TOKEN_TYPE).any()):
            raise ValueError("a row without a video holds video placeholders")
        return torch.arange(token_types.shape[0], device=token_types.device).expand(3, -1)
    slots = (token_types == VIDEO_TOKEN_TYPE).nonzero().flatten()
    count = video.num_tokens
    if count == 0:
        raise ValueError("the video has no tokens: a compressed video keeps at least one")
    if slots.numel() != count or int(slots[-1] - slots[0]) + 1 != count:
        raise ValueError(
            f"expected one run of {count} video placeholders (one per token of its video), "
            f"found {slots.numel()} placeholders"
            + ("" if slots.numel() == 0 else f" between columns {int(slots[0])}-{int(slots[-1])}")
        )
    length, start = token_types.numel(), int(slots[0])
    end = start + count
    # Text before the video, and the default for every column: 0, 1, 2, ... on all axes.
    positions = torch.arange(length, device=token_types.device).expand(3, -1).clone()
    positions[:, start:end] = video_position_ids(video, start, time_interval, token_types.device)
    _, height, width = video.grid
    positions[:, end:] = (
        torch.arange(length - end, device=token_types.device) + start + max(height, width)
    )
    return positions


def mrope_position_ids(
    token_types: torch.Tensor,
    attention_mask: torch.Tensor,
    videos: Sequence[CompressedVideo | None],
    time_interval: float,
) -> torch.Tensor:
    """M-RoPE position ids ``[3, B, L]`` of a batch whose row ``i`` holds ``videos[i]``
    (None: a text-only row).

    ``token_types`` and ``attention_mask`` are ``[B, L]``; padded columns (mask 0, left
    or right) are skipped and get 0, so a row's ids do not depend on its padding.
    """
    if len(videos) != token_types.shape[0]:
        raise ValueError(f"got {len(videos)} videos for {token_types.shape[0]} rows")
    position_ids = torch.zeros(3, *token_types.shape, dtype=torch.long, device=token_types.device)
    for row, video in enumerate(videos):
        kept = attention_mask[row].bool()
        try:
            position_ids[:, row, kept] = row_position_ids(
                token_types[row, kept], video, time_interval
            )
        except ValueError as error:
            raise ValueError(f"row {row}: {error}") from None
    return position_ids
