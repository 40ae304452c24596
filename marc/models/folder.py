"""Checks of a saved model folder before transformers reads it, with errors that name the file.

``VideoVLM.from_pretrained`` reads a folder written by ``save_pretrained`` (or a local copy
of a Hugging Face checkpoint): ``config.json``, the weights (``model.safetensors``, or the
shards of ``model.safetensors.index.json``, or ``pytorch_model.bin``), the tokenizer
(``tokenizer.json`` or ``tokenizer_config.json``) and marc's own ``marc_vlm.json``. A file
that is missing, is not JSON, or a safetensors file whose header does not match its size
(truncated, or not a safetensors file) raises :class:`ModelFolderError` naming it, instead
of what transformers or safetensors would raise from deep inside; so do weights that lack
parameters of the config, which transformers would initialise at random with a warning.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLED_WEIGHTS = "pytorch_model.bin"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
SETTINGS_FILE = "marc_vlm.json"
SETTINGS_KEYS = ("frame_size", "system_prompt", "provenance")


class ModelFolderError(ValueError):
    """A saved model folder that is missing a file or holds a corrupt one (named)."""


def check_model_folder(path: Path) -> None:
    """Raise :class:`ModelFolderError` naming the first missing or corrupt file of ``path``."""
    if not path.is_dir():
        raise FileNotFoundError(f"model folder not found: {path}")
    config = path / CONFIG_FILE
    if not config.is_file():
        raise ModelFolderError(f"not a saved model (no {CONFIG_FILE}): {path}")
    read_json(config)
    for weights in weight_files(path):
        check_safetensors(weights)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelFolderError(
            f"saved model {path} has no tokenizer ({' or '.join(TOKENIZER_FILES)})"
        )
    for name in TOKENIZER_FILES:
        if (path / name).is_file():
            read_json(path / name)


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a folder (empty for pickled weights); raises when none."""
    index = path / SAFETENSORS_INDEX
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelFolderError(f"{index}: field 'weight_map' is missing or empty")
        shards = [path / name for name in sorted(set(weight_map.values()))]
        for shard in shards:
            if not shard.is_file():
                raise ModelFolderError(f"saved model is missing {shard} (listed in {index.name})")
        return shards
    if (path / SAFETENSORS).is_file():
        return [path / SAFETENSORS]
    if (path / PICKLED_WEIGHTS).is_file():
        return []
    raise ModelFolderError(
        f"saved model {path} has no weights ({SAFETENSORS}, {SAFETENSORS_INDEX} or "
        f"{PICKLED_WEIGHTS})"
    )


def check_safetensors(path: Path) -> None:
    """A safetensors file's header parses and its tensors end exactly at the end of the file.

    Cheap (the header only), so it catches truncated and foreign files, not flipped bits
    inside tensor data: safetensors keeps no checksum.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ModelFolderError(f"{path}: corrupt or truncated safetensors ({size} bytes)")
        (length,) = struct.unpack("<Q", prefix)
        if length > size - 8:
            raise ModelFolderError(
                f"{path}: corrupt or truncated safetensors (header of {length} bytes in a file "
                f"of {size})"
            )
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ModelFolderError(f"{path}: corrupt safetensors header ({error})") from error
    if not isinstance(header, dict):
        raise ModelFolderError(f"{path}: corrupt safetensors header (not a JSON object)")
    ends = [
        entry["data_offsets"][1]
        for name, entry in header.items()
        if name != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry
    ]
    expected = 8 + length + max(ends, default=0)
    if expected != size:
        raise ModelFolderError(
            f"{path}: corrupt or truncated safetensors ({size} bytes, its header describes "
            f"{expected})"
        )


def check_loading_info(path: Path, info: dict[str, Any]) -> None:
    """Raise when transformers' loading report says some parameters were not in the weights
    (or had another shape): it would have initialised them at random, with only a warning."""
    for key, what in (("missing_keys", "lack"), ("mismatched_keys", "have another shape for")):
        names = sorted(str(name) for name in info.get(key) or ())
        if names:
            raise ModelFolderError(
                f"the weights of {path} {what} {len(names)} parameter(s) of its {CONFIG_FILE} "
                f"(first: {names[0]}); they would be initialised at random"
            )


def read_settings(path: Path) -> dict[str, Any]:
    """marc's settings saved with a model (``marc_vlm.json``); {} for a folder without them."""
    file = path / SETTINGS_FILE
    if not file.is_file():
        return {}
    settings = read_json(file)
    unknown = sorted(set(settings) - set(SETTINGS_KEYS))
    if unknown:
        raise ModelFolderError(
            f"{file}: unknown field(s) {', '.join(map(repr, unknown))} (known: "
            f"{', '.join(SETTINGS_KEYS)}); was it written by a newer marc?"
        )
    return settings


def read_json(file: Path) -> dict[str, Any]:
    """A JSON object from ``file``, or :class:`ModelFolderError` naming it."""
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFolderError(f"{file}: not valid JSON ({error})") from error
    if not isinstance(value, dict):
        raise ModelFolderError(f"{file}: expected a JSON object, got {type(value).__name__}")
    return value
