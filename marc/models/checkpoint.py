"""What a Qwen2.5-VL checkpoint folder must hold, checked before and after loading it.

``VideoVLM.from_pretrained`` reads a local folder: the hub's ``Qwen/Qwen2.5-VL-3B-Instruct``
layout (config.json, safetensors shards, tokenizer files, chat template, preprocessor
config) or one marc saved. After ``marc.models.folder`` has checked its files are there and
whole, a folder that is not Qwen2.5-VL, has no tokenizer it can build, or whose
tokenizer lacks the vision tokens its config names fails here with a
:class:`CheckpointError` naming the folder and the missing piece, instead of somewhere deep
inside transformers (or, for the vision tokens, not at all until prompts go wrong).
"""

from __future__ import annotations

import json
from pathlib import Path

from marc.models.folder import ModelFolderError

QWEN2_5_VL = "qwen2_5_vl"
# The config field of each vision token and the token Qwen2.5-VL's tokenizer has there.
VISION_TOKENS = {
    "video_token_id": "<|video_pad|>",
    "image_token_id": "<|image_pad|>",
    "vision_start_token_id": "<|vision_start|>",
    "vision_end_token_id": "<|vision_end|>",
}
TOKENIZER_FILES = ("tokenizer.json", "vocab.json and merges.txt")


class CheckpointError(ModelFolderError):
    """A checkpoint folder that cannot serve as a Qwen2.5-VL VideoVLM; names what is missing."""


def check_checkpoint_folder(path: str | Path) -> dict:
    """The folder's config.json, after checking it describes Qwen2.5-VL and a tokenizer is
    there."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model folder not found: {path}")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: no config.json: not a transformers model folder")
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config_file}: not valid JSON ({error})") from error
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != QWEN2_5_VL:
        architectures = config.get("architectures") if isinstance(config, dict) else None
        raise CheckpointError(
            f"{path}: config.json describes model_type {model_type!r} (architectures "
            f"{architectures}), not Qwen2.5-VL (model_type {QWEN2_5_VL!r})"
        )
    has_tokenizer = (path / "tokenizer.json").is_file() or all(
        (path / name).is_file() for name in ("vocab.json", "merges.txt")
    )
    if not has_tokenizer:
        raise CheckpointError(
            f"{path}: no tokenizer: expected {' or '.join(TOKENIZER_FILES)} beside config.json"
        )
    return config


def check_vision_tokens(path: str | Path, tokenizer, config) -> None:
    """Every vision token id of the model's config is that token in the tokenizer."""
    for field, token in VISION_TOKENS.items():
        token_id = getattr(config, field)
        found = tokenizer.convert_ids_to_tokens(token_id) if token_id < len(tokenizer) else None
        if found != token or tokenizer.convert_tokens_to_ids(token) != token_id:
            raise CheckpointError(
                f"{path}: the tokenizer has no vision token {token} at id {token_id} "
                f"(config.json's {field}; the tokenizer has {found!r} there): prompts could not "
                "hold the video"
            )
