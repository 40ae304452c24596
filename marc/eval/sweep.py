"""Evaluate many settings (model, compressor, budget, retrieval) over one pass of the test split.

A :class:`Setting` is what ``python main.py test --config configs/eval.yaml`` evaluates
once: a saved model, a compressor at a budget, with or without the retriever's clips (plus
the blind setting: the question without its video). :func:`evaluate_settings` answers every
question under every setting while decoding, retrieving and encoding each video once per
model, and returns one :class:`QuestionResult` per question and setting, so the report can
compare settings question by question (paired bootstrap). Each setting's answers are those
of ``VideoQAEvaluation`` for the same setting and batch size: the same encoding, compressor
call, greedy decoding and scoring.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from marc.compression import Budget, CompressedVideo, TokenCompressor
from marc.data.collate import collate_video_qa
from marc.data.dataset import VideoQADataset
from marc.models.vlm import VideoVLM
from marc.rl.answers import is_correct
from marc.rl.rewards import FORMAT_PATTERN

ALL_FRAMES = Budget(frames=1_000_000)  # more than any video: compressors keep everything
_FORMAT = re.compile(FORMAT_PATTERN, re.DOTALL)


@dataclass(frozen=True)
class Setting:
    """One evaluated configuration; ``budget_frames`` None means all frames (no compression).

    ``compressor`` names a class of ``marc.compression`` (``"Identity"`` for all frames);
    ``None`` is the blind setting: the question alone, no visual tokens.
    """

    system: str
    model_dir: str
    compressor: str | None
    vmr: bool
    budget_frames: int | None

    @property
    def blind(self) -> bool:
        return self.compressor is None


@dataclass
class QuestionResult:
    """How one setting answered one question."""

    problem_id: str
    kind: str
    correct: bool
    well_formed: bool  # <think>...</think> <answer>...</answer>
    visual_tokens: int
    kept_fraction: float  # of the full video's visual tokens
    uncompressed: bool  # the budget held all of the input's tokens
    completion: str


def full_video_tokens(vlm: VideoVLM, frames: torch.Tensor) -> int:
    """Visual tokens the full, uncompressed video gives the language model."""
    unit = vlm.patch_size * vlm.merge_size
    groups = -(-frames.shape[0] // vlm.temporal_patch_size)
    return groups * (frames.shape[-2] // unit) * (frames.shape[-1] // unit)


@torch.no_grad()
def evaluate_settings(
    settings: Iterable[Setting],
    datasets: dict[bool, VideoQADataset],
    compressors: Callable[[str], TokenCompressor],
    batch_size: int = 32,
    max_new_tokens: int = 40,
    load_model: Callable[[str], VideoVLM] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[Setting, list[QuestionResult]]:
    """Answer every question of ``datasets[vmr]`` under each setting with that ``vmr``.

    ``compressors(name)`` builds a compressor by class name; ``load_model(path)`` loads a
    saved VideoVLM (``VideoVLM.from_pretrained`` by default), once per path.
    """
    settings = list(dict.fromkeys(settings))
    load_model = load_model or (lambda path: VideoVLM.from_pretrained(path).eval())
    models: dict[str, VideoVLM] = {}
    built = {name: compressors(name) for name in {s.compressor for s in settings} - {None}}
    results: dict[Setting, list[QuestionResult]] = {s: [] for s in settings}
    for vmr in (False, True):
        chosen = [s for s in settings if s.vmr == vmr]
        if not chosen:
            continue
        by_model = defaultdict(list)
        for setting in chosen:
            by_model[setting.model_dir].append(setting)
        for path in by_model:
            if path not in models:
                models[path] = load_model(path)
        loader = DataLoader(
            datasets[vmr], batch_size=batch_size, shuffle=False, collate_fn=collate_video_qa
        )
        for index, batch in enumerate(loader):
            if not batch.get("batch_size"):
                continue
            frames = batch["retrieved_video"] if vmr else batch["video"]
            segments = batch.get("retrieved_segments") if vmr else None
            for path, group in by_model.items():
                _answer_batch(models[path], group, built, batch, frames, segments, results,
                              max_new_tokens)  # fmt: skip
            if progress is not None:
                progress(f"{'with' if vmr else 'without'} VMR: batch {index + 1}/{len(loader)}")
    return results


def _answer_batch(
    vlm: VideoVLM,
    settings: list[Setting],
    compressors: dict[str, TokenCompressor],
    batch: dict,
    frames: list[torch.Tensor],
    segments: list | None,
    results: dict[Setting, list[QuestionResult]],
    max_new_tokens: int,
) -> None:
    """Answer one batch under every setting of one model; the videos are encoded once."""
    encoded = [vlm.encode_video(f) for f in frames] if any(not s.blind for s in settings) else []
    full = [full_video_tokens(vlm, f) for f in batch["video"]]
    for setting in settings:
        videos: list[CompressedVideo | None]
        if setting.blind:
            videos = [None] * len(frames)
        else:
            budget = Budget(frames=setting.budget_frames) if setting.budget_frames else ALL_FRAMES
            compressor = compressors[setting.compressor]
            videos = [
                compressor(tokens, grid, budget, vlm.group_segments(spans, len(f)))
                for (tokens, grid), f, spans in zip(
                    encoded, frames, segments or [None] * len(frames)
                )
            ]
        output = vlm.generate(
            videos, batch["prompt"], max_new_tokens=max_new_tokens, do_sample=False
        )
        for i, text in enumerate(output.texts):
            video = videos[i]
            tokens = 0 if video is None else video.num_tokens
            results[setting].append(
                QuestionResult(
                    problem_id=batch["problem_id"][i],
                    kind=batch["question_kind"][i],
                    correct=is_correct(
                        text,
                        batch["solution"][i],
                        batch["problem_type"][i],
                        options=batch["options"][i],
                    ),
                    well_formed=_FORMAT.match(text) is not None,
                    visual_tokens=tokens,
                    kept_fraction=tokens / full[i],
                    uncompressed=video is not None and video.kept_fraction == 1.0,
                    completion=text,
                )
            )


def model_folder(artifacts: Path, system: str) -> Path:
    """Where ``make demo`` exports a system's model (the blind setting uses the teacher)."""
    stage = "teacher" if system == "blind" else system
    return artifacts / stage / "model"
