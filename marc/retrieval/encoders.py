"""The dual encoder of the Visual Memory Retriever: clips and questions into one space.

Both encoders L2-normalise their output, so the dot product of a clip and a query
embedding is their cosine similarity. :class:`ClipEncoderBase` and
:class:`QueryEncoderBase` are what the retriever and its training need of them; the
encoders trained from scratch here end in a linear projection to ``embed_dim``, those of
``marc.retrieval.dual_encoder`` are the two towers of one pretrained dual encoder.
"""

from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from marc.configurable import Configurable
from marc.vocabulary import build_query_tokenizer

Clips = torch.Tensor | list[torch.Tensor]


def subsample_frames(clip: torch.Tensor, max_frames: int | None) -> torch.Tensor:
    """At most ``max_frames`` frames of a ``[T, C, H, W]`` clip, spread uniformly in time."""
    total = clip.shape[0]
    if max_frames is None or total <= max_frames:
        return clip
    # Centres of ``max_frames`` equal parts, so a clip is represented by its middle too.
    index = ((torch.arange(max_frames) + 0.5) * total / max_frames).long()
    return clip[index]


class ClipEncoderBase(Configurable, nn.Module):
    """Embeds clips (uint8 ``[T, C, H, W]`` each) into unit vectors ``[N, embed_dim]``.

    Subclasses implement ``forward(clips)`` for one clip, a batch ``[B, T, C, H, W]`` or a
    list of clips, and ``embed_dim``; they are Configurable so a saved retriever rebuilds
    them from ``{class_path, init_args}``.
    """

    @property
    def embed_dim(self) -> int:
        """Size of the output embeddings."""
        raise NotImplementedError

    def encode_clips(self, clips: list[torch.Tensor]) -> torch.Tensor:
        """Embed a list of uint8 clips ``[T, C, H, W]`` into unit vectors ``[N, D]``."""
        return self(clips)


def clip_list(clips: Clips) -> list[torch.Tensor]:
    """One clip, a batch ``[B, T, C, H, W]`` or a list of clips as a checked list of clips."""
    if isinstance(clips, torch.Tensor):
        if clips.ndim == 4:
            clips = [clips]
        elif clips.ndim == 5:
            clips = list(clips)
        else:
            raise ValueError(
                f"clips must be [T, C, H, W] or [B, T, C, H, W], got {tuple(clips.shape)}"
            )
    if len(clips) == 0:
        raise ValueError("no clips to encode")
    for i, clip in enumerate(clips):
        if clip.ndim != 4 or clip.shape[0] == 0:
            raise ValueError(
                f"clip {i} must be a non-empty [T, C, H, W] tensor, got {tuple(clip.shape)}"
            )
    return list(clips)


class ClipEncoder(ClipEncoderBase):
    """A timm image backbone applied per frame, mean-pooled over time, projected, L2-normalised.

    It is :class:`~marc.configurable.Configurable`: ``describe(encoder)`` rebuilds it to load
    a saved state dict.

    Args:
        backbone: any timm model name; the default is a small ResNet fast on a CPU.
        embed_dim: size of the shared embedding space.
        max_frames_per_clip: frames encoded per clip (uniformly subsampled); None for all.
        image_size: frames are resized to this square size first; None keeps their size.
        pretrained: False for random weights; the path of a local weights file of the
            backbone (``.safetensors``, ``.pth``); or True for timm's published weights,
            which are downloaded, so True also needs ``allow_download``.
        allow_download: let ``pretrained=True`` fetch weights from the network.
    """

    def __init__(
        self,
        backbone: str = "test_resnet",
        embed_dim: int = 128,
        max_frames_per_clip: int | None = 4,
        image_size: int | None = 112,
        pretrained: bool | str = False,
        allow_download: bool = False,
    ):
        super().__init__()
        if max_frames_per_clip is not None and max_frames_per_clip < 1:
            raise ValueError(f"max_frames_per_clip must be at least 1, got {max_frames_per_clip}")
        self.backbone = _timm_backbone(backbone, pretrained, allow_download)
        self.max_frames_per_clip = max_frames_per_clip
        self.image_size = image_size
        cfg = self.backbone.pretrained_cfg or {}
        mean = torch.tensor(cfg.get("mean", IMAGENET_DEFAULT_MEAN)).view(1, -1, 1, 1)
        std = torch.tensor(cfg.get("std", IMAGENET_DEFAULT_STD)).view(1, -1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.projection = nn.Linear(self.backbone.num_features, embed_dim)

    @property
    def embed_dim(self) -> int:
        """Size of the output embeddings."""
        return self.projection.out_features

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (or [0, 1] float) frames ``[N, C, H, W]`` to normalised model input."""
        device = self.mean.device
        x = frames.to(device)
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        if self.image_size is not None and tuple(x.shape[-2:]) != (self.image_size,) * 2:
            size = (self.image_size, self.image_size)
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        return (x - self.mean) / self.std

    def forward(self, clips: Clips) -> torch.Tensor:
        """Embed clips (one ``[T, C, H, W]``, a batch ``[B, T, C, H, W]`` or a list): ``[N, D]``."""
        sampled = [subsample_frames(c, self.max_frames_per_clip) for c in clip_list(clips)]
        lengths = [len(s) for s in sampled]
        if len({tuple(s.shape[1:]) for s in sampled}) > 1 and self.image_size is None:
            raise ValueError("clips of different frame sizes need image_size set")
        frames = torch.cat([self.preprocess(s) for s in sampled])
        features = self.backbone(frames)
        owner = torch.repeat_interleave(
            torch.arange(len(sampled), device=features.device),
            torch.tensor(lengths, device=features.device),
        )
        pooled = torch.zeros(len(sampled), features.shape[1], device=features.device)
        pooled = pooled.index_add(0, owner, features.float())
        pooled = pooled / torch.tensor(lengths, device=features.device).unsqueeze(1)
        return F.normalize(self.projection(pooled), dim=-1)


class QueryEncoderBase(Configurable, nn.Module):
    """Embeds texts into unit vectors ``[N, embed_dim]``, with an optional relation head.

    Subclasses implement :meth:`pooled` (a text feature per text) and :meth:`embed`
    (features to unit embeddings) and set ``offset_head`` (None, or a module from the
    pooled features to ``2 * max_offset + 1`` offset classes) and ``max_offset``.
    """

    # No class-level ``offset_head = None``: nn.Module keeps a registered head outside the
    # instance dict, where a class attribute would shadow it.
    max_offset: int = 0

    @property
    def embed_dim(self) -> int:
        """Size of the output embeddings."""
        raise NotImplementedError

    def pooled(self, texts: list[str]) -> torch.Tensor:
        """One feature vector per text, ``[N, F]`` (what the relation head reads)."""
        raise NotImplementedError

    def embed(self, pooled: torch.Tensor) -> torch.Tensor:
        """Unit embeddings ``[N, D]`` of pooled features."""
        raise NotImplementedError

    def forward(self, texts: list[str]) -> torch.Tensor:
        """Embed texts into unit vectors ``[N, D]``."""
        return self.embed(self.pooled(texts))

    def embed_with_offsets(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Unit embeddings ``[N, D]`` and offset logits ``[N, 2 * max_offset + 1]`` (class
        ``i`` is offset ``i - max_offset``), from one pass; logits are None without a head."""
        pooled = self.pooled(texts)
        logits = self.offset_head(pooled) if self.offset_head is not None else None
        return self.embed(pooled), logits

    def predict_offsets(self, texts: list[str]) -> list[int]:
        """The most likely offset of each text's answer clip from its named clip (0s without
        a relation head)."""
        if self.offset_head is None:
            return [0] * (1 if isinstance(texts, str) else len(texts))
        return self.offsets_from_logits(self.embed_with_offsets(texts)[1])

    def offsets_from_logits(self, logits: torch.Tensor) -> list[int]:
        """The offset of each row's most likely class (class ``i`` is ``i - max_offset``)."""
        return (logits.argmax(-1) - self.max_offset).tolist()

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Embed a list of strings into unit vectors ``[N, D]``."""
        return self(texts)


def _timm_backbone(name: str, pretrained: bool | str, allow_download: bool) -> nn.Module:
    """A timm model without its classifier: random, from a local file, or downloaded."""
    if pretrained is False or pretrained is None:
        return timm.create_model(name, pretrained=False, num_classes=0)
    if pretrained is True:
        if not allow_download:
            raise ValueError(
                f"ClipEncoder(pretrained=True) would download timm's weights of {name!r}: "
                "pass allow_download=True to allow it, or pretrained=PATH to a local file"
            )
        return timm.create_model(name, pretrained=True, num_classes=0)
    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(f"ClipEncoder(pretrained=...) names a missing weights file: {path}")
    # A "file" source: timm reads it and never looks at the hub.
    return timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, num_classes=0
    )


class QueryEncoder(QueryEncoderBase):
    """A text transformer, mean-pooled over tokens, projected and L2-normalised.

    By default a small BERT built from a config with the word-level tokenizer of the
    embedded default; with ``pretrained`` a local transformers model directory (a text
    model, or a dual-encoder such as CLIP / SigLIP whose text tower is used) and its
    tokenizer, read offline: a name that is not a local folder (a hub id) is an error unless
    ``allow_download`` is set. It is :class:`~marc.configurable.Configurable` like
    :class:`ClipEncoder`.

    With ``max_offset > 0`` a temporal relation head reads the same pooled text and
    classifies where the clip that answers a question lies relative to the clip it names,
    in clips from ``-max_offset`` to ``+max_offset`` ("which background comes right after
    X?" names X and is answered by the clip after it: offset +1). Similarity alone can only
    find the named clip; the retriever moves each match by the predicted offset.
    """

    def __init__(
        self,
        embed_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        intermediate_size: int = 256,
        max_length: int = 64,
        pretrained: str | None = None,
        max_offset: int = 0,
        allow_download: bool = False,
    ):
        super().__init__()
        if max_offset < 0:
            raise ValueError(f"max_offset must be at least 0, got {max_offset}")
        self.max_length = max_length
        self.max_offset = max_offset
        if pretrained is not None:
            self.tokenizer, model = _text_model(pretrained, allow_download)
            # Dual encoders (CLIP, SigLIP) load both towers; only the text tower is kept.
            self.text_model = getattr(model, "text_model", model)
            hidden = getattr(model.config, "text_config", model.config).hidden_size
        else:
            self.tokenizer = build_query_tokenizer(model_max_length=max_length)
            config = BertConfig(
                vocab_size=len(self.tokenizer),
                hidden_size=hidden_size,
                num_hidden_layers=num_layers,
                num_attention_heads=num_heads,
                intermediate_size=intermediate_size,
                max_position_embeddings=max_length,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            self.text_model = BertModel(config, add_pooling_layer=False)
            hidden = hidden_size
        self.projection = nn.Linear(hidden, embed_dim)
        self.offset_head = nn.Linear(hidden, 2 * max_offset + 1) if max_offset else None

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        embed_dim: int = 128,
        max_length: int = 64,
        max_offset: int = 0,
        allow_download: bool = False,
    ) -> QueryEncoder:
        """A query encoder over a local transformers text model (or dual encoder) and tokenizer."""
        return cls(
            embed_dim=embed_dim,
            max_length=max_length,
            pretrained=str(path),
            max_offset=max_offset,
            allow_download=allow_download,
        )

    @property
    def embed_dim(self) -> int:
        """Size of the output embeddings."""
        return self.projection.out_features

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Padded, truncated token ids and attention mask on the encoder's device."""
        max_length = min(self.max_length, self.tokenizer.model_max_length)
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        device = self.projection.weight.device
        return {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}

    def pooled(self, texts: list[str]) -> torch.Tensor:
        """Mean of the text model's last hidden states over real tokens, ``[N, hidden]``."""
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            raise ValueError("no texts to encode")
        batch = self.tokenize(texts)
        hidden = self.text_model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float()

    def embed(self, pooled: torch.Tensor) -> torch.Tensor:
        """Projected, L2-normalised embeddings ``[N, D]``."""
        return F.normalize(self.projection(pooled), dim=-1)


def _text_model(name: str, allow_download: bool):
    """Tokenizer and model of a local transformers folder (or, when allowed, a hub id)."""
    if not allow_download and not Path(name).is_dir():
        # Checked before transformers is called: for a hub id even local_files_only=True
        # lets huggingface_hub make a request (its user-agent look-up) before it gives up.
        raise FileNotFoundError(
            f"QueryEncoder(pretrained={name!r}): not a local model folder, and nothing is "
            "downloaded unless allow_download=True"
        )
    tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=not allow_download)
    model = AutoModel.from_pretrained(name, local_files_only=not allow_download)
    return tokenizer, model
