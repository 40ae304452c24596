"""VideoVLM: one adapter over transformers' Qwen2.5-VL for compressed video question answering.

Flow: uint8 frames -> :meth:`VideoVLM.pixel_inputs` (the Qwen2-VL video processor's
patchification, in torch) -> :meth:`VideoVLM.encode_video` (vision tower, tokens
``[T', h*w, D]`` time-major) -> a compressor -> :meth:`VideoVLM.prepare_inputs`, which puts
the kept tokens into the language model through ``mm_encoder_outputs`` (one placeholder
per token, in ``CompressedVideo.flat_tokens`` order) with explicit 3-D M-RoPE position ids.

Positions (:mod:`marc.models.positions`): every visual token is placed at its own
``(t, h, w)`` (``CompressedVideo.token_positions``: the cells of the compressed grid for a
grid-shaped video, the kept tokens' cells of the input grid for a token-level one). A video
after ``s`` text positions puts ``(t, h, w)`` at ``(s + t * tokens_per_second, s + h,
s + w)``, and the text after it continues at ``s + max(H, W)`` of its grid, the rule of
transformers' ``get_rope_index`` (5.24), which the tests check it equals for grid-shaped
videos. Text ids are equal on the three axes.

Batch layout (teacher forcing and generation alike): every prompt is left-padded to the
longest prompt ``P`` and every completion is right-padded after it, so completion token
``j`` of every row sits at column ``P + j``. Generation is a compact KV-cached decode loop
with explicit position ids continuing the prompt's text positions by one per token, as
the same tokens get in a longer teacher-forced sequence (and as ``model.generate`` places
them for grid-shaped videos; the tests check both). It is used instead of
``model.generate`` so that sampling draws from a caller's ``torch.Generator``
(reproducible rollouts without touching the global RNG), vision placeholder tokens can
never be sampled, token-level videos work, and the result is the completion ids with their
mask. ``model.model.rope_deltas`` is reset on every call: it is state transformers keeps
between calls, and for more than one temporal group it does not match the text positions
``get_rope_index`` returns (transformers 5.24: the deltas count from the largest temporal
id, the text continues from the spatial extent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import (
    AutoProcessor,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from transformers.modeling_outputs import BaseModelOutputWithPooling

from marc.compression.base import Budget, CompressedVideo, Grid, TokenCompressor
from marc.io import read_lock
from marc.models.checkpoint import check_checkpoint_folder, check_vision_tokens
from marc.models.fast_vision import speed_up_vision
from marc.models.folder import (
    SETTINGS_FILE,
    ModelFolderError,
    check_loading_info,
    check_model_folder,
    read_settings,
)
from marc.models.positions import VIDEO_TOKEN_TYPE, mrope_position_ids
from marc.models.tiny import tiny_qwen2_5_vl_config
from marc.vocabulary import build_tiny_tokenizer

# Video-R1 style instruction for real Qwen checkpoints.
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant. Think about the question step by step inside "
    "<think> </think> tags, then give the final answer inside <answer> </answer> tags."
)
# Every token costs CPU time with the tiny model, so its instruction is a few words.
TINY_SYSTEM_PROMPT = "think first in <think> </think> then answer in <answer> </answer>"
MODEL_INPUT_KEYS = (
    "input_ids",
    "attention_mask",
    "position_ids",
    "mm_token_type_ids",
    "video_grid_thw",
    "mm_encoder_outputs",
)
# Seconds of video per temporal group in the M-RoPE temporal ids: the value transformers
# assumes when no second_per_grid_ts is given (frame rates are not tracked per video).
SECONDS_PER_GROUP = 1


@dataclass
class GenerationOutput:
    """Sampled completions: texts, token ids ``[B*n, L]`` and a mask of the generated tokens.

    Rows are grouped by prompt (prompt ``i`` owns rows ``i*n .. i*n+n-1``). The mask is 1
    up to and including the first end-of-sequence token and 0 on the padding after it.
    """

    texts: list[str]
    sequences: torch.Tensor
    mask: torch.Tensor


class CompletionLogProbs(NamedTuple):
    """Per-token log-probabilities ``[B, L]`` of completions, their mask, and optional logits."""

    logprobs: torch.Tensor
    mask: torch.Tensor
    logits: torch.Tensor | None = None


def completion_cross_entropy(scored: CompletionLogProbs) -> torch.Tensor:
    """Mean negative log-likelihood over completion tokens (prompt and padding excluded)."""
    mask = scored.mask.float()
    return -(scored.logprobs * mask).sum() / mask.sum().clamp(min=1)


class VideoVLM(nn.Module):
    """Qwen2.5-VL wrapped for compressed-video QA: encode, prompt, log-probs, generate.

    ``frame_size`` records the frame size (short side, px) the model was trained on, saved
    with it (None when unknown); the stages set it from the data they train on and warn
    when they feed a model frames of another size. ``provenance`` says where the weights
    came from (set by the stage that exports them).
    """

    def __init__(
        self,
        model: Qwen2_5_VLForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        processor=None,
        frame_size: int | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        provenance: dict | None = None,
    ):
        super().__init__()
        # Where the weights came from (the stage, its step, what it started from), saved
        # with them and read by the report.
        self.provenance = dict(provenance or {})
        self.model = model
        # The vision tower's windows in one batched attention call (same numbers, less CPU).
        speed_up_vision(model)
        self.tokenizer = tokenizer
        self.processor = processor
        self.frame_size = frame_size
        self.system_prompt = system_prompt
        config = model.config
        vision = config.vision_config
        self.patch_size: int = vision.patch_size
        self.temporal_patch_size: int = vision.temporal_patch_size
        self.merge_size: int = vision.spatial_merge_size
        # M-RoPE temporal id step per temporal group, as get_rope_index scales it.
        self.time_interval: float = vision.tokens_per_second * SECONDS_PER_GROUP
        self.video_token_id: int = config.video_token_id
        self.vision_start_id: int = config.vision_start_token_id
        self.vision_end_id: int = config.vision_end_token_id
        self.video_token: str = tokenizer.convert_ids_to_tokens(self.video_token_id)
        self.pad_token_id: int = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        self.eos_token_ids: list[int] = self._eos_ids()
        vision_ids = {
            config.video_token_id,
            config.image_token_id,
            config.vision_start_token_id,
            config.vision_end_token_id,
        }
        # Generated text must never hold vision placeholders: the model would try to fill them.
        banned = vision_ids | ({self.pad_token_id} - set(self.eos_token_ids))
        # The embedding is padded past the tokenizer (the 3B: 151,936 rows, 151,665 tokens):
        # those rows are no token at all.
        banned |= set(range(len(tokenizer), self.vocab_size))
        self.banned_token_ids: list[int] = sorted(i for i in banned if i < self.vocab_size)
        video_processor = getattr(processor, "video_processor", None)
        self.image_mean = tuple(getattr(video_processor, "image_mean", None) or OPENAI_CLIP_MEAN)
        self.image_std = tuple(getattr(video_processor, "image_std", None) or OPENAI_CLIP_STD)
        self.rescale_factor = float(getattr(video_processor, "rescale_factor", None) or 1 / 255)

    # ----------------------------------------------------------------------------- building
    @classmethod
    def tiny(cls, seed: int = 0, frame_size: int | None = None, **overrides) -> VideoVLM:
        """Random-init small model with the word-level tokenizer of the embedded default."""
        tokenizer = build_tiny_tokenizer()
        config = tiny_qwen2_5_vl_config(len(tokenizer), **overrides)
        # Seeded without touching the caller's global random state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls.from_config(
                config, tokenizer, frame_size=frame_size, system_prompt=TINY_SYSTEM_PROMPT
            )

    @classmethod
    def from_config(
        cls,
        config: Qwen2_5_VLConfig,
        tokenizer: PreTrainedTokenizerBase,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        **kwargs,
    ) -> VideoVLM:
        """Random-init model of any size from a config (e.g. ``qwen2_5_vl_3b_config()``)."""
        # Built directly on the target device and dtype: a 3B model never exists in fp32 on CPU.
        with torch.device(device or "cpu"):
            model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
        return cls(model, tokenizer, **kwargs)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, torch_dtype: torch.dtype | str | None = None, **kwargs
    ) -> VideoVLM:
        """Load weights, tokenizer and (if saved) processor from a local folder, offline.

        The folder may be laid out as the hub's ``Qwen/Qwen2.5-VL-3B-Instruct`` or as
        :meth:`save_pretrained` writes it. A missing or corrupt file raises
        :class:`~marc.models.folder.ModelFolderError` naming it (a missing folder:
        FileNotFoundError); a folder that is not Qwen2.5-VL, has no usable tokenizer or whose
        tokenizer lacks the vision tokens its subclass ``CheckpointError``, naming the folder
        and the piece. The folder's read lock is held throughout, so an export swapped in by
        another process is read whole.
        """
        path = Path(path)
        with read_lock(path):
            check_model_folder(path)
            check_checkpoint_folder(path)
            settings = read_settings(path)
            try:
                model, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                    path, dtype=torch_dtype, local_files_only=True, output_loading_info=True
                )
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                processor = None
                if any((path / name).is_file() for name in _PROCESSOR_FILES):
                    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
            except (OSError, ValueError, RuntimeError, SafetensorError) as error:
                raise ModelFolderError(
                    f"cannot load the saved model {path} ({type(error).__name__}: {error})"
                ) from error
            check_loading_info(path, info)
            check_vision_tokens(path, tokenizer, model.config)
        return cls(model, tokenizer, processor=processor, **{**settings, **kwargs})

    def save_pretrained(self, directory: str | Path, state_dict: dict | None = None) -> None:
        """Save model, tokenizer, processor and settings so ``from_pretrained`` loads them back.

        ``state_dict``: the weights to write instead of this module's own, keyed like
        ``self.model.state_dict()`` (a sharded run gathers them first: this process may hold
        a shard only, see ``marc.modules.sharding``).
        """
        directory = Path(directory)
        self.model.save_pretrained(directory, state_dict=state_dict)
        self.tokenizer.save_pretrained(directory)
        if self.processor is not None:
            self.processor.save_pretrained(directory)
        settings = {
            "frame_size": self.frame_size,
            "system_prompt": self.system_prompt,
            "provenance": self.provenance,
        }
        (directory / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the model's parameters."""
        return next(self.model.parameters()).dtype

    @property
    def vocab_size(self) -> int:
        """Size of the language model's output layer."""
        return self.model.config.text_config.vocab_size

    # ------------------------------------------------------------------------------ vision
    def pixel_inputs(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 frames ``[T, C, H, W]`` -> patches and grid exactly as the Qwen2-VL processor."""
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be [T, 3, H, W], got {tuple(frames.shape)}")
        num_frames, channels, height, width = frames.shape
        unit = self.patch_size * self.merge_size
        if height % unit or width % unit:
            raise ValueError(
                f"frame height and width must be multiples of {unit}, got {height}x{width}"
            )
        # Same float32 arithmetic as the processor's fused rescale-and-normalise.
        mean = torch.tensor(self.image_mean, device=self.device) * (1.0 / self.rescale_factor)
        std = torch.tensor(self.image_std, device=self.device) * (1.0 / self.rescale_factor)
        x = frames.to(self.device, torch.float32).sub(mean[:, None, None]).div(std[:, None, None])
        if pad := -num_frames % self.temporal_patch_size:
            x = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)])
        p, m, tp = self.patch_size, self.merge_size, self.temporal_patch_size
        grid_t, grid_h, grid_w = x.shape[0] // tp, height // p, width // p
        x = x.view(grid_t, tp, channels, grid_h // m, m, p, grid_w // m, m, p)
        # Patches ordered (t, h-block, w-block, h-in-block, w-in-block), each (C, tp, p, p).
        x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
        pixel_values = x.reshape(grid_t * grid_h * grid_w, channels * tp * p * p)
        grid_thw = torch.tensor([[grid_t, grid_h, grid_w]], device=self.device)
        return pixel_values, grid_thw

    def encode_video(self, frames: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        """Visual tokens ``[T', h*w, D]`` of a video and its grid ``(T', h, w)`` in merged units."""
        pixel_values, grid_thw = self.pixel_inputs(frames)
        features = self.model.model.get_video_features(pixel_values, grid_thw).pooler_output[0]
        grid_t, grid_h, grid_w = grid_thw[0].tolist()
        grid = (grid_t, grid_h // self.merge_size, grid_w // self.merge_size)
        return features.view(grid[0], grid[1] * grid[2], -1), grid

    def compress(
        self,
        frames: torch.Tensor,
        compressor: TokenCompressor,
        budget: Budget,
        segments: list[tuple[int, int]] | None = None,
    ) -> CompressedVideo:
        """Encode a video and compress its tokens to ``budget``.

        ``segments`` are frame spans that tile ``frames`` (the retrieved clips); they reach
        the compressor as spans of temporal groups, so each must start on a group border.
        """
        tokens, grid = self.encode_video(frames)
        return compressor(tokens, grid, budget, self.group_segments(segments, len(frames)))

    def group_segments(
        self, segments: list[tuple[int, int]] | None, num_frames: int
    ) -> list[tuple[int, int]] | None:
        """Frame spans -> spans of temporal groups (``temporal_patch_size`` frames each).

        A span starting inside a group would put two clips in one group: a ValueError says
        to pad clips to whole groups (``VisualMemoryRetriever`` does).
        """
        if segments is None:
            return None
        size = self.temporal_patch_size
        groups = -(-num_frames // size)
        spans = []
        for index, (start, end) in enumerate(segments):
            if start % size:
                raise ValueError(
                    f"segment {index} starts at frame {start}, inside a temporal group of "
                    f"{size} frames: pad each clip to a multiple of {size} frames"
                )
            spans.append((start // size, min(groups, -(-end // size))))
        return spans

    # ------------------------------------------------------------------------------ prompts
    @property
    def chat_template(self) -> str | None:
        """The checkpoint's own chat template (its tokenizer's, else its processor's), if any."""
        return getattr(self.tokenizer, "chat_template", None) or getattr(
            self.processor, "chat_template", None
        )

    def build_prompt(self, question: str) -> str:
        """Chat prompt with one video placeholder (expanded per video in ``prepare_inputs``).

        With the checkpoint's own chat template (a real Qwen2.5-VL's), the system prompt and
        a user turn of the video then the question, rendered by that template, which writes
        the vision tokens; without one (the tiny word tokenizer) Qwen's layout written out.
        """
        if self.chat_template:
            messages = [
                {"role": "system", "content": self.system_prompt},
                {
                    "role": "user",
                    "content": [{"type": "video"}, {"type": "text", "text": question}],
                },
            ]
            return self.tokenizer.apply_chat_template(
                messages,
                chat_template=self.chat_template,
                tokenize=False,
                add_generation_prompt=True,
            )
        return (
            f"<|im_start|>system\n{self.system_prompt}<|im_end|>\n"
            f"<|im_start|>user\n<|vision_start|>{self.video_token}<|vision_end|>"
            f"{question}<|im_end|>\n"
            "<|im_start|>assistant\n"
        )

    def _prompt_ids(self, prompts: list[str], videos: list[CompressedVideo]) -> list[list[int]]:
        """Token ids of each prompt with its placeholder repeated once per kept visual token."""
        texts = [p if self.video_token in p else self.build_prompt(p) for p in prompts]
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        rows = []
        for index, (ids, video) in enumerate(zip(encoded, videos)):
            slots = [i for i, token in enumerate(ids) if token == self.video_token_id]
            if len(slots) != 1:
                raise ValueError(
                    f"prompt {index} must hold exactly one {self.video_token}, found {len(slots)}"
                )
            at = slots[0]
            if video is None:
                # A text-only prompt: the video block goes, with its start and end markers.
                before = at - 1 if at > 0 and ids[at - 1] == self.vision_start_id else at
                after = (
                    at + 2 if at + 1 < len(ids) and ids[at + 1] == self.vision_end_id else at + 1
                )
                rows.append(ids[:before] + ids[after:])
                continue
            rows.append(ids[:at] + [self.video_token_id] * video.num_tokens + ids[at + 1 :])
        return rows

    def _completion_ids(self, completions, add_eos: bool) -> list[list[int]]:
        """Completion token ids from strings (EOS appended) or ids (cut after the first EOS)."""
        if isinstance(completions, torch.Tensor):
            completions = completions.tolist()
        if completions and isinstance(completions[0], str):
            rows = self.tokenizer(list(completions), add_special_tokens=False)["input_ids"]
            rows = [row + [self.eos_token_ids[0]] if add_eos else row for row in rows]
        else:
            rows = [list(row) for row in completions]
        cut = []
        for index, row in enumerate(rows):
            if self.video_token_id in row:
                raise ValueError(f"completion {index} contains the video placeholder token")
            end = next(
                (i + 1 for i, token in enumerate(row) if token in self.eos_token_ids), len(row)
            )
            cut.append(row[:end])
        return cut

    def prepare_inputs(
        self,
        videos: list[CompressedVideo],
        prompts: list[str],
        completions: list[str] | list[list[int]] | torch.Tensor | None = None,
        add_eos: bool = True,
    ) -> dict:
        """Batch of model inputs for compressed videos, prompts and optional completions.

        ``prompts`` are questions (wrapped with :meth:`build_prompt`) or full prompts holding
        one video placeholder. String completions get an EOS appended (``add_eos``); id
        completions (e.g. ``GenerationOutput.sequences``) are cut after their first EOS.
        Videos may be grid-shaped or token-level (``CompressedVideo``), mixed freely; a
        batch of ``None`` videos is text only (the question without the video: a blind
        baseline), with no video inputs at all.
        Returns the model inputs (``MODEL_INPUT_KEYS``) plus ``completion_mask`` (aligned
        with ``input_ids``, 1 on completion tokens) and ``prompt_length`` ``P``.
        ``position_ids`` ``[3, B, L]`` come from :func:`mrope_position_ids`; the model uses
        them as given. ``video_grid_thw`` (see :meth:`_video_grid_thw`) is None when a video
        is token-level.
        """
        if len(videos) != len(prompts):
            raise ValueError(f"got {len(videos)} videos but {len(prompts)} prompts")
        blind = all(v is None for v in videos)
        if not blind and any(v is None for v in videos):
            raise ValueError("a batch is either all videos or all text-only (None) rows")
        prompt_rows = self._prompt_ids(prompts, videos)
        completion_rows = [[] for _ in prompts]
        if completions is not None:
            completion_rows = self._completion_ids(completions, add_eos)
            if len(completion_rows) != len(prompts):
                raise ValueError(
                    f"got {len(completion_rows)} completions for {len(prompts)} prompts"
                )
        batch, device = len(prompts), self.device
        prompt_length = max(len(row) for row in prompt_rows)
        length = prompt_length + max(len(row) for row in completion_rows)
        input_ids = torch.full((batch, length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros(batch, length, dtype=torch.long)
        completion_mask = torch.zeros(batch, length, dtype=torch.long)
        for i, (prompt, completion) in enumerate(zip(prompt_rows, completion_rows)):
            start, end = prompt_length - len(prompt), prompt_length + len(completion)
            input_ids[i, start:prompt_length] = torch.tensor(prompt)
            input_ids[i, prompt_length:end] = torch.tensor(completion, dtype=torch.long)
            attention_mask[i, start:end] = 1
            completion_mask[i, prompt_length:end] = 1
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        mm_token_type_ids = torch.zeros_like(input_ids, dtype=torch.int32)
        mm_token_type_ids[:, :prompt_length][
            input_ids[:, :prompt_length] == self.video_token_id
        ] = VIDEO_TOKEN_TYPE
        position_ids = mrope_position_ids(
            mm_token_type_ids, attention_mask, videos, self.time_interval
        )
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
            "mm_token_type_ids": mm_token_type_ids,
            "completion_mask": completion_mask.to(device),
            "prompt_length": prompt_length,
        }
        if not blind:
            features = tuple(v.flat_tokens().to(device, self.dtype) for v in videos)
            inputs["video_grid_thw"] = self._video_grid_thw(videos)
            inputs["mm_encoder_outputs"] = {
                "video": BaseModelOutputWithPooling(pooler_output=features)
            }
        return inputs

    def _video_grid_thw(self, videos: list[CompressedVideo]) -> torch.Tensor | None:
        """Each video's grid in patch units ``[B, 3]``, or None when a video is token-level.

        The model does not read it when ``position_ids`` and ``mm_encoder_outputs`` are given
        (it only checks that features and placeholders have the same count); it is there so
        that transformers' own paths (``model.generate``, a forward without position ids)
        rebuild the same positions for grid-shaped videos. No grid describes tokens at
        arbitrary positions, so for those there is none rather than a misleading one.
        """
        if any(v.is_token_level for v in videos):
            return None
        # Each merged token covers merge_size^2 patches.
        return torch.tensor(
            [[t, h * self.merge_size, w * self.merge_size] for t, h, w in (v.grid for v in videos)],
            device=self.device,
        )

    # --------------------------------------------------------------------- teacher forcing
    def forward(self, inputs: dict, **kwargs):
        """Run the wrapped model on a ``prepare_inputs`` batch (extra keys are ignored)."""
        # Stale deltas from an earlier call must never leak into this one.
        self.model.model.rope_deltas = None
        model_inputs = {key: inputs[key] for key in MODEL_INPUT_KEYS if key in inputs}
        # A fresh dict: the model may add entries to mm_encoder_outputs.
        if "mm_encoder_outputs" in model_inputs:
            model_inputs["mm_encoder_outputs"] = dict(model_inputs["mm_encoder_outputs"])
        return self.model(**model_inputs, **kwargs)

    def completion_logprobs(
        self,
        videos: list[CompressedVideo],
        prompts: list[str],
        completions: list[str] | list[list[int]] | torch.Tensor,
        return_logits: bool = False,
        add_eos: bool = True,
    ) -> CompletionLogProbs:
        """Teacher-forced log-probs ``[B, L]`` of completion tokens, their mask (and logits)."""
        inputs = self.prepare_inputs(videos, prompts, completions, add_eos=add_eos)
        prompt_length = inputs["prompt_length"]
        num_completion = inputs["input_ids"].shape[1] - prompt_length
        # Only the positions that predict completion tokens go through the LM head.
        logits = self(inputs, use_cache=False, logits_to_keep=num_completion + 1).logits[:, :-1]
        targets = inputs["input_ids"][:, prompt_length:]
        mask = inputs["completion_mask"][:, prompt_length:]
        logits32 = logits.float()
        picked = logits32.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        logprobs = (picked - logits32.logsumexp(-1)) * mask
        return CompletionLogProbs(logprobs, mask, logits if return_logits else None)

    def sft_loss(
        self,
        videos: list[CompressedVideo],
        prompts: list[str],
        completions: list[str] | list[list[int]] | torch.Tensor,
    ) -> torch.Tensor:
        """Mean cross-entropy over completion tokens (``completion_cross_entropy``)."""
        return completion_cross_entropy(self.completion_logprobs(videos, prompts, completions))

    # -------------------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(
        self,
        videos: list[CompressedVideo],
        prompts: list[str],
        num_return_sequences: int = 1,
        max_new_tokens: int = 32,
        do_sample: bool = True,
        temperature: float = 1.0,
        top_p: float = 0.95,
        min_new_tokens: int = 0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> GenerationOutput:
        """Sample (or, with ``do_sample=False``, greedily decode) completions with a KV cache."""
        if seed is not None and generator is None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        # Train mode with gradient checkpointing would switch the KV cache off.
        was_training = self.model.training
        self.model.eval()
        try:
            return self._decode_loop(
                videos, prompts, num_return_sequences, max_new_tokens, do_sample,
                temperature, top_p, min_new_tokens, generator,
            )  # fmt: skip
        finally:
            self.model.train(was_training)

    def _decode_loop(
        self,
        videos: list[CompressedVideo],
        prompts: list[str],
        num_return_sequences: int,
        max_new_tokens: int,
        do_sample: bool,
        temperature: float,
        top_p: float,
        min_new_tokens: int,
        generator: torch.Generator | None,
    ) -> GenerationOutput:
        """KV-cached decoding of a batch; see :meth:`generate`."""
        inputs = self._repeat(self.prepare_inputs(videos, prompts), num_return_sequences)
        attention_mask = inputs["attention_mask"]
        rows = attention_mask.shape[0]
        # The prompt ends with text, whose three M-RoPE coordinates are equal; new tokens
        # continue from it exactly as prepare_inputs places them in a longer sequence.
        next_position = inputs["position_ids"][0, :, -1] + 1
        out = self(inputs, use_cache=True, logits_to_keep=1)
        finished = torch.zeros(rows, dtype=torch.bool, device=self.device)
        eos = torch.tensor(self.eos_token_ids, device=self.device)
        tokens, masks = [], []
        for step in range(max_new_tokens):
            logits = out.logits[:, -1].float()
            logits[:, self.banned_token_ids] = -float("inf")
            if step < min_new_tokens:
                logits[:, eos] = -float("inf")
            token = self._pick(logits, do_sample, temperature, top_p, generator)
            token = torch.where(finished, torch.full_like(token, self.pad_token_id), token)
            masks.append(~finished)
            tokens.append(token)
            finished = finished | torch.isin(token, eos)
            if step + 1 == max_new_tokens or (finished.all() and step + 1 >= min_new_tokens):
                break
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(rows, 1)], dim=1)
            position = (next_position + step).view(1, rows, 1).expand(3, rows, 1)
            out = self.model(
                input_ids=token[:, None],
                attention_mask=attention_mask,
                position_ids=position,
                cache=out.cache,
                use_cache=True,
            )
        sequences = torch.stack(tokens, dim=1)
        mask = torch.stack(masks, dim=1).long()
        return GenerationOutput(self._decode(sequences, mask), sequences, mask)

    @staticmethod
    def _pick(
        logits: torch.Tensor,
        do_sample: bool,
        temperature: float,
        top_p: float,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Next token per row: argmax, or a temperature / nucleus (top-p) sample."""
        if not do_sample:
            return logits.argmax(-1)
        probs = torch.softmax(logits / max(temperature, 1e-6), dim=-1)
        if top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            # Keep the smallest prefix whose mass reaches top_p (always the top token).
            drop = sorted_probs.cumsum(-1) - sorted_probs >= top_p
            sorted_probs = sorted_probs.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    @staticmethod
    def _repeat(inputs: dict, times: int) -> dict:
        """Repeat every sample of a batch ``times`` times in a row (grouped by prompt)."""
        if times == 1:
            return inputs
        repeated = dict(inputs)
        for key in ("input_ids", "attention_mask", "mm_token_type_ids", "completion_mask"):
            repeated[key] = inputs[key].repeat_interleave(times, dim=0)
        if inputs.get("video_grid_thw") is not None:
            repeated["video_grid_thw"] = inputs["video_grid_thw"].repeat_interleave(times, dim=0)
        repeated["position_ids"] = inputs["position_ids"].repeat_interleave(times, dim=1)
        if "mm_encoder_outputs" in inputs:
            features = inputs["mm_encoder_outputs"]["video"].pooler_output
            repeated["mm_encoder_outputs"] = {
                "video": BaseModelOutputWithPooling(
                    pooler_output=tuple(f for f in features for _ in range(times))
                )
            }
        return repeated

    def _decode(self, sequences: torch.Tensor, mask: torch.Tensor) -> list[str]:
        """Completion texts: generated tokens before the first EOS, special tokens dropped."""
        texts = []
        for row, keep in zip(sequences.tolist(), mask.tolist()):
            ids = [t for t, k in zip(row, keep) if k and t not in self.eos_token_ids]
            texts.append(self.tokenizer.decode(ids, skip_special_tokens=True).strip())
        return texts

    def _eos_ids(self) -> list[int]:
        """End-of-sequence ids: the tokenizer's first, then any the generation config adds."""
        ids = [self.tokenizer.eos_token_id]
        extra = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        extra = [extra] if isinstance(extra, int) else list(extra or [])
        return ids + [i for i in extra if i not in ids]


_PROCESSOR_FILES = (
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
)
