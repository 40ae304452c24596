"""marc as an lmms-eval model: ``lmms-eval --model marc --model_args pretrained=FOLDER,...``.

:class:`MarcLMM` implements lmms-eval's ``lmms`` interface over a saved :class:`VideoVLM`:
each request's video (the path the task's ``doc_to_visual`` returns) is decoded as marc's
data module decodes it, optionally replaced by the retriever's clips, encoded, compressed to
the budget and answered by greedy decoding, the steps of ``marc.eval.sweep._answer_batch``
(docs/CONTRACTS.md, "lmms-eval model_args"). lmms-eval finds the class through the entry
point group ``lmms_eval.models`` (pyproject.toml, :func:`manifest`); it lives in the
environment ``make lmms-venv`` builds (``.venv-lmms``), as lmms-eval is no dependency of
marc's own.

Only ``generate_until`` is served: ``loglikelihood`` and ``generate_until_multi_round``
raise NotImplementedError.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms

from marc.compression import Budget, CompressedVideo, TokenCompressor, build_compressor
from marc.data.video import decode_video
from marc.models.vlm import VideoVLM
from marc.retrieval.segment import VideoSource
from marc.rl.answers import extract_answer

ALL_FRAMES = Budget(frames=1_000_000)  # as marc.eval.sweep: compressors keep everything
OUTPUTS = ("answer", "completion")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
# The data module's decoding defaults (marc.data.datamodule.VideoQADataModule).
DEFAULT_MAX_FRAMES = 64
DEFAULT_FRAME_SIZE = 56
DEFAULT_NEW_TOKENS = 40  # marc.eval.sweep.evaluate_settings' default
# lmms-eval's default stop string for generate_until: marc's completions never need it.
_PARAGRAPH = "\n\n"


def manifest():
    """The registration lmms-eval reads from the ``lmms_eval.models`` entry point group."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id="marc", simple_class_path="marc.eval.lmms.MarcLMM")


class ModelArgsError(ValueError):
    """A ``--model_args`` field with a bad value; the message names the field."""

    def __init__(self, field: str, value, reason: str):
        self.field = field
        super().__init__(f"model_args {field}={value}: {reason}")


def _number(field: str, value, kind: type, reason: str):
    """``value`` (a number, or its text: lmms-eval passes some flags as strings) as ``kind``."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ModelArgsError(field, value, reason) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelArgsError(field, value, reason)
    if kind is int and int(value) != value:
        raise ModelArgsError(field, value, reason)
    return kind(value)


def _is_none(value) -> bool:
    return value is None or (isinstance(value, str) and value.lower() in ("", "none", "null"))


def _optional_int(field: str, value) -> int | None:
    if _is_none(value):
        return None
    number = _number(field, value, int, "expected a whole number")
    if number < 1:
        raise ModelArgsError(field, value, "expected a number of at least 1")
    return number


def _optional_float(field: str, value) -> float | None:
    if _is_none(value):
        return None
    number = _number(field, value, float, "expected a positive number")
    if number <= 0:
        raise ModelArgsError(field, value, "expected a positive number")
    return number


class MarcLMM(lmms):
    """A saved marc model behind lmms-eval's ``generate_until``.

    Args (``--model_args``, see docs/CONTRACTS.md):
        pretrained: the model folder (``VideoVLM.save_pretrained`` or a hub-style
            Qwen2.5-VL folder), required.
        compressor: a compressor of ``marc.compression`` by class name.
        budget_frames: the budget in frames; None keeps every frame.
        retriever: a retriever folder (``VisualMemoryRetriever.save_pretrained``); the
            model then reads the retrieved clips instead of the whole video.
        retriever_k: clips retrieved per question (None: the saved retriever's k).
        query_field: the document field the retriever is queried with (None: the prompt).
        fps / max_frames / frame_size: decoding, as ``VideoQADataModule``; ``frame_size``
            None takes the model's own (56 px when it records none).
        max_new_tokens: tokens generated per answer; None takes the task's generation
            kwargs' ``max_new_tokens``, else 40. Given, it wins over the task's: a task's
            16 tokens would cut marc's ``<think>…</think> <answer>…</answer>`` short.
        output: ``answer`` returns the text of the completion's ``<answer>`` (the whole
            completion when it has none), ``completion`` the whole completion.
        batch_size / device / dtype: loading and batching (lmms-eval passes ``batch_size``
            and ``device`` from its own flags).
    """

    def __init__(
        self,
        pretrained: str | None = None,
        compressor: str = "MemoryAwareMerge",
        budget_frames=None,
        retriever: str | None = None,
        retriever_k=None,
        query_field: str | None = None,
        fps=None,
        max_frames=DEFAULT_MAX_FRAMES,
        frame_size=None,
        max_new_tokens=None,
        output: str = "answer",
        batch_size=1,
        device: str | None = None,
        dtype: str | None = None,
        **unknown,
    ) -> None:
        super().__init__()
        unknown.pop("max_batch_size", None)  # passed by lmms-eval's evaluator, unused here
        if unknown:
            field = sorted(unknown)[0]
            raise ModelArgsError(field, unknown[field], "unknown field (see docs/CONTRACTS.md)")
        if not pretrained:
            raise ModelArgsError("pretrained", pretrained, "name the saved model folder")
        if output not in OUTPUTS:
            raise ModelArgsError("output", output, f"expected one of {', '.join(OUTPUTS)}")
        self.budget_frames = _optional_int("budget_frames", budget_frames)
        self.retriever_k = _optional_int("retriever_k", retriever_k)
        self.max_frames = _optional_int("max_frames", max_frames)
        self.fps = _optional_float("fps", fps)
        self.max_new_tokens = _optional_int("max_new_tokens", max_new_tokens)
        self.batch_size_per_gpu = _optional_int("batch_size", batch_size) or 1
        self.output = output
        self.query_field = query_field or None
        self.compressor_name = str(compressor)
        try:
            self.compressor: TokenCompressor = build_compressor(self.compressor_name)
        except ValueError as error:
            raise ModelArgsError("compressor", compressor, str(error)) from error
        self.vlm = self._load_model(str(pretrained), dtype, device)
        frame_size = _optional_int("frame_size", frame_size)
        self.frame_size = frame_size or self.vlm.frame_size or DEFAULT_FRAME_SIZE
        self.retriever = self._load_retriever(retriever)

    @staticmethod
    def _load_model(path: str, dtype: str | None, device: str | None) -> VideoVLM:
        if dtype not in (None, "auto") and not isinstance(
            getattr(torch, str(dtype), None), torch.dtype
        ):
            raise ModelArgsError("dtype", dtype, "expected a torch dtype such as bfloat16")
        torch_dtype = None if dtype in (None, "auto") else getattr(torch, dtype)
        try:
            vlm = VideoVLM.from_pretrained(path, torch_dtype=torch_dtype)
        except (OSError, ValueError) as error:
            raise ModelArgsError("pretrained", path, str(error)) from error
        target = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            return vlm.to(target).eval()
        except (RuntimeError, AssertionError) as error:
            raise ModelArgsError("device", target, str(error)) from error

    def _load_retriever(self, folder: str | None):
        if not folder:
            return None
        from marc.retrieval.retriever import VisualMemoryRetriever

        path = Path(str(folder))
        if not path.is_dir():
            raise ModelArgsError("retriever", folder, "no such retriever folder")
        try:
            return VisualMemoryRetriever.from_pretrained(path, k=self.retriever_k)
        except (OSError, ValueError) as error:
            raise ModelArgsError("retriever", folder, str(error)) from error

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    # ------------------------------------------------------------------------- requests
    def loglikelihood(self, requests: list[Instance]):
        raise NotImplementedError(
            "marc's lmms-eval model serves generate_until only: loglikelihood (multiple choice "
            "by scoring options) is not implemented; use a task with output_type generate_until"
        )

    def generate_until_multi_round(self, requests: list[Instance]):
        raise NotImplementedError(
            "marc's lmms-eval model serves generate_until only: multi-round generation is not "
            "implemented"
        )

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Answers in request order, ``batch_size`` requests per ``VideoVLM.generate`` call."""
        answers: list[str] = []
        for start in range(0, len(requests), self.batch_size):
            answers.extend(self._answer(requests[start : start + self.batch_size]))
        return answers

    @torch.no_grad()
    def _answer(self, chunk: list[Instance]) -> list[str]:
        prompts, videos, stops, limits = [], [], [], []
        for request in chunk:
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            doc = self.task_dict[task][split][doc_id]
            prompts.append(context)
            videos.append(self._video(doc_to_visual(doc), doc, context))
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            stops.append([s for s in until if s and s != _PARAGRAPH])
            limits.append(
                self.max_new_tokens or int(gen_kwargs.get("max_new_tokens") or DEFAULT_NEW_TOKENS)
            )
        output = self.vlm.generate(videos, prompts, max_new_tokens=max(limits), do_sample=False)
        return [self._text(t, s) for t, s in zip(output.texts, stops)]

    def _text(self, completion: str, stops: list[str]) -> str:
        for stop in stops:
            completion = completion.split(stop, 1)[0]
        if self.output == "answer":
            answer = extract_answer(completion)
            return completion if answer is None else answer
        return completion

    def _video(self, visuals, doc: dict, context: str) -> CompressedVideo | None:
        """The compressed visual tokens of a request's one video (None: no visual)."""
        visuals = [] if visuals is None else list(visuals)
        if not visuals:
            return None
        if len(visuals) > 1:
            raise ValueError(f"marc answers over one video per question, got {len(visuals)}")
        path = visuals[0]
        if not isinstance(path, str | os.PathLike) or not str(path).lower().endswith(
            VIDEO_SUFFIXES
        ):
            raise ValueError(
                f"marc reads video files; the task's doc_to_visual gave {type(path).__name__} "
                f"{str(path)[:80]!r}"
            )
        frames, source_indices = decode_video(path, self.fps, self.max_frames, self.frame_size)
        segments = None
        if self.retriever is not None:
            query = context if self.query_field is None else str(doc[self.query_field])
            result = self.retriever.retrieve(
                str(path), frames, query, source=VideoSource(str(path), source_indices)
            )
            frames, segments = result.frames, [tuple(s) for s in result.segments]
        tokens, grid = self.vlm.encode_video(frames)
        budget = Budget(frames=self.budget_frames) if self.budget_frames else ALL_FRAMES
        return self.compressor(tokens, grid, budget, self.vlm.group_segments(segments, len(frames)))
