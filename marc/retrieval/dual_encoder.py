"""A zero-shot retriever: clips and questions embedded by the two towers of one pretrained
dual encoder (a local transformers CLIP or SigLIP folder), so they share one space without
any retriever training.

:class:`PretrainedClipEncoder` keeps the vision tower (frames through the folder's own image
processor, ``get_image_features``, each frame L2-normalised, mean over the clip's frames,
normalised again); :class:`PretrainedQueryEncoder` keeps the text tower (the folder's
tokenizer, ``get_text_features``, normalised). Each loads the folder offline
(``local_files_only``) and checks that both towers embed into the same size, naming both
when they do not. Both are ``Configurable`` over the folder's path, so a saved retriever
rebuilds them from it (its state dicts then hold any fine-tuned weights): the contrastive
stage (``RetrieverPretraining``) trains them like the encoders it trains from scratch.

The paper's encoder, Perception Encoder, has no CLIP-style dual-encoder layout in
transformers (timm has its vision towers only); a SigLIP or CLIP folder stands in for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

from marc.retrieval.encoders import (
    ClipEncoderBase,
    Clips,
    QueryEncoderBase,
    clip_list,
    subsample_frames,
)

# Each tower's modules, dropped from the encoder that does not use them.
_TEXT_PARTS = ("text_model", "text_projection")
_VISION_PARTS = ("vision_model", "visual_projection")


class DualEncoderError(ValueError):
    """A folder that is not a usable dual encoder; names the folder and what is wrong."""


def load_dual_encoder(model_dir: str | os.PathLike) -> tuple[nn.Module, object, object, dict]:
    """Model, tokenizer and image processor of a local dual encoder, and each tower's size.

    Raises :class:`DualEncoderError` naming the folder when a piece is missing, the model
    has no image and text towers, or the towers embed into different sizes.
    """
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise DualEncoderError(f"{path}: not a transformers model folder (no config.json)")
    try:
        model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    except (OSError, ValueError, KeyError) as error:
        raise DualEncoderError(f"{path}: cannot load the model ({error})") from error
    if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise DualEncoderError(
            f"{path}: {type(model).__name__} is not a dual encoder (no image and text towers; "
            "expected a CLIP or SigLIP layout)"
        )
    pieces = {}
    for name, loader in (("tokenizer", AutoTokenizer), ("image processor", AutoImageProcessor)):
        try:
            pieces[name] = loader.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError) as error:
            raise DualEncoderError(f"{path}: has no usable {name} ({error})") from error
    tokenizer, image_processor = pieces["tokenizer"], pieces["image processor"]
    with torch.no_grad():
        sizes = {
            "vision": _image_features(
                model, image_processor, [torch.zeros(3, 32, 32, dtype=torch.uint8)]
            ).shape[-1],
            "text": _text_features(
                model, tokenizer, ["a"], _max_length(model, tokenizer, None)
            ).shape[-1],
        }
    if sizes["vision"] != sizes["text"]:
        raise DualEncoderError(
            f"{path}: its towers embed into different sizes, the vision tower into "
            f"{sizes['vision']} and the text tower into {sizes['text']} dimensions; clips and "
            "questions must share one space"
        )
    return model, tokenizer, image_processor, sizes


def _pooled(output) -> torch.Tensor:
    """The projected embedding of ``get_*_features`` (a ModelOutput in transformers 5)."""
    return output.pooler_output if hasattr(output, "pooler_output") else output


def _image_features(model: nn.Module, image_processor, frames: list[torch.Tensor]) -> torch.Tensor:
    pixels = image_processor(images=list(frames), return_tensors="pt")["pixel_values"]
    parameter = next(model.parameters())
    pixels = pixels.to(parameter.device, parameter.dtype)
    return _pooled(model.get_image_features(pixel_values=pixels)).float()


def _max_length(model: nn.Module, tokenizer, max_length: int | None) -> int:
    text_config = getattr(model.config, "text_config", model.config)
    limits = [getattr(text_config, "max_position_embeddings", None), max_length]
    limits.append(tokenizer.model_max_length if tokenizer.model_max_length < 1e6 else None)
    return min(limit for limit in limits if limit)


def _text_features(model: nn.Module, tokenizer, texts: list[str], max_length: int) -> torch.Tensor:
    # SigLIP pools the last position and was trained on max-length padding; CLIP pools at
    # its end-of-text token, so plain padding is enough.
    siglip = model.config.model_type.startswith("siglip")
    batch = tokenizer(
        list(texts),
        padding="max_length" if siglip else True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    device = next(model.parameters()).device
    inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask") if k in batch}
    if siglip:
        inputs.pop("attention_mask", None)  # SigLIP's text tower attends to the padding
    return _pooled(model.get_text_features(**inputs)).float()


def _drop(model: nn.Module, parts: tuple[str, ...]) -> nn.Module:
    """The model without the modules of the tower an encoder does not use."""
    for name in parts:
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
    return model


class PretrainedClipEncoder(ClipEncoderBase):
    """The vision tower of a local dual encoder: clips to unit vectors, zero-shot.

    Args:
        model_dir: the dual encoder's folder (``save_pretrained`` layout with its tokenizer
            and image processor).
        max_frames_per_clip: frames embedded per clip (uniformly subsampled); None for all.
    """

    def __init__(self, model_dir: str, max_frames_per_clip: int | None = 8):
        super().__init__()
        if max_frames_per_clip is not None and max_frames_per_clip < 1:
            raise ValueError(f"max_frames_per_clip must be at least 1, got {max_frames_per_clip}")
        model, _, self.image_processor, sizes = load_dual_encoder(model_dir)
        self.model = _drop(model, _TEXT_PARTS)
        self.model_dir = str(model_dir)
        self.max_frames_per_clip = max_frames_per_clip
        self._embed_dim = sizes["vision"]

    @property
    def embed_dim(self) -> int:
        """Size of the output embeddings."""
        return self._embed_dim

    def forward(self, clips: Clips) -> torch.Tensor:
        """Embed clips (one ``[T, C, H, W]``, a batch or a list) into unit vectors ``[N, D]``."""
        sampled = [subsample_frames(c, self.max_frames_per_clip) for c in clip_list(clips)]
        frames = [frame for clip in sampled for frame in clip.cpu()]
        features = F.normalize(_image_features(self.model, self.image_processor, frames), dim=-1)
        lengths = [len(clip) for clip in sampled]
        pooled = torch.stack([part.mean(0) for part in features.split(lengths)])
        return F.normalize(pooled, dim=-1)


class PretrainedQueryEncoder(QueryEncoderBase):
    """The text tower of a local dual encoder: questions to unit vectors, zero-shot.

    Args:
        model_dir: the dual encoder's folder (the same as the clip encoder's).
        max_length: at most this many tokens per text (and at most the tower's positions).
        max_offset: with ``max_offset > 0`` a temporal relation head (new, trained by the
            contrastive stage) reads the tower's embedding; 0 for zero-shot use.
    """

    def __init__(self, model_dir: str, max_length: int | None = 64, max_offset: int = 0):
        super().__init__()
        if max_offset < 0:
            raise ValueError(f"max_offset must be at least 0, got {max_offset}")
        model, self.tokenizer, _, sizes = load_dual_encoder(model_dir)
        self.model = _drop(model, _VISION_PARTS)
        self.model_dir = str(model_dir)
        self.max_length = _max_length(model, self.tokenizer, max_length)
        self.max_offset = max_offset
        self._embed_dim = sizes["text"]
        self.offset_head = nn.Linear(self._embed_dim, 2 * max_offset + 1) if max_offset else None

    @property
    def embed_dim(self) -> int:
        """Size of the output embeddings."""
        return self._embed_dim

    def pooled(self, texts: list[str]) -> torch.Tensor:
        """The text tower's projected embedding of each text (before normalising)."""
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            raise ValueError("no texts to encode")
        return _text_features(self.model, self.tokenizer, texts, self.max_length)

    def embed(self, pooled: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings ``[N, D]``."""
        return F.normalize(pooled, dim=-1)


def check_one_dual_encoder(clip_encoder: nn.Module, query_encoder: nn.Module) -> None:
    """Towers of two different dual encoders do not share a space: a ValueError names both."""
    folders = [getattr(e, "model_dir", None) for e in (clip_encoder, query_encoder)]
    if None in folders:
        return
    if Path(folders[0]).resolve() != Path(folders[1]).resolve():
        raise ValueError(
            f"the clip encoder's dual encoder {folders[0]} and the query encoder's "
            f"{folders[1]} differ: zero-shot retrieval needs both towers of one model"
        )
