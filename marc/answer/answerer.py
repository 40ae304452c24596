"""Answer one question about one video file, timing each phase.

The phases, in the order they run: ``decode`` (hashing the file and reading its frames),
``segment``, ``embed`` (the clips, then saving the clip memory), ``search`` (embedding the
question, the nearest clips of its video, the relation head's move), ``encode`` (the
vision tower over the retrieved clips), ``compress``, ``prefill`` (the prompt's forward
pass) and ``generate`` (the decode loop after it). A video already in the clip memory
(:mod:`marc.answer.store`) skips segmenting and embedding, and only its retrieved clips'
frames are decoded; with ``cache_tokens`` the visual tokens of clips retrieved before are
kept in memory too, so such a question decodes and encodes nothing. Without retrieval (the teacher) the whole video is decoded and
encoded. The answering itself is ``marc.eval.sweep``'s: the same encoding, compressor
call, greedy decoding and scoring.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from marc.answer.questions import Question
from marc.answer.store import ClipStore, Decoding, StoredClip, file_sha256
from marc.compression import Budget, Identity, TokenCompressor
from marc.data.video import resize_frames, sample_indices
from marc.decoding import decode_rgb
from marc.models.vlm import VideoVLM
from marc.retrieval.retriever import VisualMemoryRetriever, reconstruct_video
from marc.retrieval.segment import VideoSource
from marc.rl.answers import extract_answer, is_correct

PHASES = ("decode", "segment", "embed", "search", "encode", "compress", "prefill", "generate")
ALL_FRAMES = Budget(frames=1_000_000)  # more than any video: the compressor keeps all
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_CLIP_BATCH = 32  # clips embedded per encoder call


class Phases:
    """Seconds spent in each phase (a phase may be entered several times)."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - start

    def rounded(self) -> dict[str, float]:
        return {name: round(value, 4) for name, value in self.seconds.items()}


@dataclass
class Answer:
    """What :meth:`Answerer.answer` returns: one line of ``predictions.jsonl`` (``as_line``)."""

    question: Question
    completion: str
    answer: str | None
    reasoning: str | None
    clips: list[dict]
    visual_tokens: int
    full_video_tokens: int
    cached: bool
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def correct(self) -> bool | None:
        q = self.question
        if q.solution is None:
            return None
        return is_correct(self.completion, q.solution, q.problem_type, options=q.options)

    def as_line(self) -> dict:
        q = self.question
        line = {
            "problem_id": q.problem_id,
            "status": "ok",
            "video": str(q.video),
            "problem": q.problem,
            "options": q.options,
            "completion": self.completion,
            "answer": self.answer,
            "reasoning": self.reasoning,
            "clips": self.clips,
            "visual_tokens": self.visual_tokens,
            "full_video_tokens": self.full_video_tokens,
            "cached": self.cached,
            "seconds": self.seconds,
        }
        if q.solution is not None:
            line["solution"] = q.solution
            line["correct"] = self.correct
        return line


class Answerer:
    """A model, a retriever over a persistent clip memory and a compressor at a budget.

    Args:
        vlm: the answering model (e.g. ``artifacts/cgrpo/model``).
        retriever / store: the VMR and the clip memory it searches; both None answers on
            all frames (no retrieval).
        compressor / budget_frames: applied to the retrieved clips' tokens (None: all).
        decoding: how frames are read (the store's spans count such frames).
        max_new_tokens / min_new_tokens: of the greedy decode (a minimum fixes the length
            for timing).
        cache_tokens: keep the visual tokens of each set of retrieved clips in memory (this
            process only), so a question that retrieves the same clips of a stored video
            skips decoding and encoding them too.
    """

    def __init__(
        self,
        vlm: VideoVLM,
        retriever: VisualMemoryRetriever | None = None,
        store: ClipStore | None = None,
        compressor: TokenCompressor | None = None,
        budget_frames: int | None = 1,
        decoding: Decoding | None = None,
        max_new_tokens: int = 40,
        min_new_tokens: int = 0,
        cache_tokens: bool = False,
    ):
        if (retriever is None) != (store is None):
            raise ValueError("give both a retriever and its clip store, or neither")
        self.vlm = vlm.eval()
        self.retriever = retriever
        self.store = store
        self.compressor = compressor or Identity()
        self.budget = Budget(frames=budget_frames) if budget_frames else ALL_FRAMES
        self.decoding = decoding or Decoding()
        self.max_new_tokens = max_new_tokens
        self.min_new_tokens = min_new_tokens
        self.cache_tokens = cache_tokens
        # (file sha256, retrieved clip indices) -> (tokens, grid, group segments, full tokens)
        self._token_cache: dict[tuple, tuple] = {}

    # ----------------------------------------------------------------------- decoding
    def _decode(self, path: Path, select) -> tuple[torch.Tensor, np.ndarray, float]:
        decoded = decode_rgb(path, select)
        frames = torch.from_numpy(decoded.frames).permute(0, 3, 1, 2).contiguous()
        return resize_frames(frames, self.decoding.frame_size), decoded.indices, decoded.fps

    def decode_all(self, path: Path) -> tuple[torch.Tensor, np.ndarray, float]:
        """Every sampled frame (uint8 [T, C, H, W]), its source index and the file's fps."""
        d = self.decoding
        return self._decode(
            path, lambda total, rate: sample_indices(total, rate, d.fps, d.max_frames)
        )

    # ----------------------------------------------------------------------- retrieval
    def _index(self, key: str, path: Path, phases: Phases):
        """Decode, segment and embed a video not yet in the store; returns its frames."""
        with phases("decode"):
            frames, indices, fps = self.decode_all(path)
        with phases("segment"):
            spans = self.retriever.segmenter.segment_source(frames, VideoSource(str(path), indices))
        with phases("embed"), torch.no_grad():
            encoder = self.retriever.clip_encoder.eval()
            embeddings = torch.cat(
                [
                    encoder.encode_clips([frames[s:e] for s, e in spans[i : i + _CLIP_BATCH]])
                    for i in range(0, len(spans), _CLIP_BATCH)
                ]
            )
            self.store.add(key, path, spans, embeddings, indices.tolist(), fps)
        return frames

    def _search(self, key: str, problem: str) -> list[tuple[StoredClip, float]]:
        """The question's clips of this video with their scores, in time order."""
        query_encoder = self.retriever.query_encoder.eval()
        with torch.no_grad():
            query, logits = query_encoder.embed_with_offsets([problem])
        offset = query_encoder.offsets_from_logits(logits)[0] if logits is not None else 0
        clips = {clip.item_id: clip for clip in self.store.clips(key)}
        by_index = {clip.clip_index: clip for clip in clips.values()}
        results = self.store.memory.search(query, self.retriever.k, video_id=key)[0]
        first, last = min(by_index), max(by_index)
        chosen: dict[int, tuple[StoredClip, float]] = {}
        for result in sorted(results, key=lambda r: -r.score):
            index = min(max(clips[result.id].clip_index + offset, first), last)
            chosen.setdefault(index, (by_index[index], float(result.score)))
        return sorted(chosen.values(), key=lambda item: item[0].span)

    def _retrieve(self, question: Question, phases: Phases):
        """((reconstructed frames, their clip segments, the full video's tokens) or None when
        the clips' tokens are cached, clip records, whether the video was stored, the key of
        the clips' tokens)."""
        path = question.video
        with phases("decode"):
            key = file_sha256(path)
        cached = self.store.has(key)
        frames = None if cached else self._index(key, path, phases)
        with phases("search"):
            chosen = self._search(key, question.problem)
        stored = self.store.clips(key)
        records = [
            {
                "clip_index": clip.clip_index,
                "start_s": clip.seconds[0],
                "end_s": clip.seconds[1],
                "frames": list(clip.span),
                "score": round(score, 4),
            }
            for clip, score in chosen
        ]
        token_key = (key, tuple(clip.clip_index for clip, _ in chosen))
        if token_key in self._token_cache:
            return None, records, cached, token_key
        with phases("decode"):
            if frames is None:
                wanted = sorted({f for clip, _ in chosen for f in clip.source_frames})
                subset, _, _ = self._decode(path, lambda total, rate: np.asarray(wanted))
                position = {f: i for i, f in enumerate(wanted)}
                spans = [
                    (position[c.source_frames[0]], position[c.source_frames[-1]] + 1)
                    for c, _ in chosen
                ]
                num_frames = stored[-1].span[1]
            else:
                subset, spans, num_frames = frames, [c.span for c, _ in chosen], len(frames)
            video, segments = reconstruct_video(
                subset, spans, self.retriever.max_clip_frames, self.retriever.frame_multiple
            )
        full = self._tokens(num_frames, video.shape[-2], video.shape[-1])
        return (video, segments, full), records, cached, token_key

    def _tokens(self, num_frames: int, height: int, width: int) -> int:
        vlm = self.vlm
        unit = vlm.patch_size * vlm.merge_size
        groups = -(-num_frames // vlm.temporal_patch_size)
        return groups * (height // unit) * (width // unit)

    # ----------------------------------------------------------------------- answering
    @torch.no_grad()
    def answer(self, question: Question) -> Answer:
        """Answer one question (greedy), with the seconds of every phase."""
        phases = Phases()
        token_key = None
        if self.retriever is None:
            with phases("decode"):
                video, _, _ = self.decode_all(question.video)
            segments, records, cached = None, [], False
            full = self._tokens(len(video), video.shape[-2], video.shape[-1])
            prepared = video, segments, full
        else:
            prepared, records, cached, token_key = self._retrieve(question, phases)
        if prepared is None:  # the retrieved clips' visual tokens are cached
            tokens, grid, groups, full = self._token_cache[token_key]
        else:
            video, segments, full = prepared
            with phases("encode"):
                tokens, grid = self.vlm.encode_video(video.to(self.vlm.device))
            groups = self.vlm.group_segments(segments, len(video))
            if self.cache_tokens and token_key is not None:
                self._token_cache[token_key] = (tokens, grid, groups, full)
        with phases("compress"):
            compressed = self.compressor(tokens, grid, self.budget, groups)
        completion = self._generate(compressed, question.prompt, phases)
        reasoning = _THINK.search(completion)
        return Answer(
            question=question,
            completion=completion,
            answer=extract_answer(completion),
            reasoning=reasoning.group(1).strip() if reasoning else None,
            clips=records,
            visual_tokens=compressed.num_tokens,
            full_video_tokens=full,
            cached=cached,
            seconds=phases.rounded(),
        )

    def _generate(self, video, prompt: str, phases: Phases) -> str:
        """Greedy decoding; the prompt's forward pass is timed as ``prefill``, the rest as
        ``generate`` (a hook on the language model marks the end of its first call)."""
        start = time.perf_counter()
        marks: list[float] = []
        hook = self.vlm.model.register_forward_hook(
            lambda *_: marks.append(time.perf_counter()) if not marks else None
        )
        try:
            output = self.vlm.generate(
                [video],
                [prompt],
                max_new_tokens=self.max_new_tokens,
                min_new_tokens=self.min_new_tokens,
                do_sample=False,
            )
        finally:
            hook.remove()
        end = time.perf_counter()
        prefill_end = marks[0] if marks else end
        phases.seconds["prefill"] += prefill_end - start
        phases.seconds["generate"] += end - prefill_end
        return output.texts[0]


def load_answerer(
    model_dir: str | Path,
    retriever_dir: str | Path | None,
    clip_memory_dir: str | Path,
    compressor: TokenCompressor | None = None,
    budget_frames: int | None = 1,
    fps: float | None = None,
    max_frames: int | None = 64,
    frame_size: int | None = None,
    max_new_tokens: int = 40,
    cache_tokens: bool = False,
) -> Answerer:
    """An :class:`Answerer` over saved folders; a missing or broken one is :class:`BadInput`
    naming it. ``frame_size`` None reads frames at the size the model was trained on."""
    from marc.answer.questions import BadInput
    from marc.answer.store import retriever_fingerprint
    from marc.models.folder import ModelFolderError
    from marc.retrieval.retriever import RetrieverFolderError

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise BadInput(
            f"model folder not found: {model_dir} (make demo builds artifacts/cgrpo/model)"
        )
    try:
        vlm = VideoVLM.from_pretrained(model_dir)
    except (ModelFolderError, FileNotFoundError, OSError) as error:
        raise BadInput(f"model folder {model_dir}: {str(error).splitlines()[0]}") from error
    decoding = Decoding(fps, max_frames, frame_size or vlm.frame_size or 56)
    retriever = store = None
    if retriever_dir is not None:
        retriever_dir = Path(retriever_dir)
        if not retriever_dir.is_dir():
            raise BadInput(
                f"retriever folder not found: {retriever_dir} (make demo builds artifacts/retriever)"
            )
        try:
            retriever = VisualMemoryRetriever.from_pretrained(retriever_dir)
        except RetrieverFolderError as error:
            raise BadInput(f"retriever folder {retriever_dir}: {error}") from error
        store = ClipStore(
            clip_memory_dir, retriever, retriever_fingerprint(retriever_dir, decoding)
        )
    return Answerer(
        vlm, retriever, store, compressor, budget_frames, decoding, max_new_tokens,
        cache_tokens=cache_tokens,
    )  # fmt: skip
