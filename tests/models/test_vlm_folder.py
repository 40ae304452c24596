"""A damaged model folder fails to load with an error that names the file and what is wrong."""

from __future__ import annotations

import json
import shutil

import pytest

from marc.models.folder import ModelFolderError
from marc.models.vlm import VideoVLM


@pytest.fixture
def saved(tiny_vlm_dir, tmp_path):
    """A copy of a saved tiny VideoVLM that a test may damage."""
    return shutil.copytree(tiny_vlm_dir, tmp_path / "model")


def _truncate(path, keep):
    path.write_bytes(path.read_bytes()[:keep])


def _shard(model):
    """Turn the single weights file into a two-entry shard index whose second shard is gone."""
    (model / "model.safetensors").rename(model / "model-00001-of-00002.safetensors")
    index = {
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
        }
    }
    (model / "model.safetensors.index.json").write_text(json.dumps(index))


DAMAGE = {
    "no-config": (lambda m: (m / "config.json").unlink(), r"no config.json\): .*model"),
    "bad-config": (lambda m: (m / "config.json").write_text("{oops"), r"config.json: not valid JSON"),
    "no-weights": (lambda m: (m / "model.safetensors").unlink(), r"has no weights \(model.safetensors"),
    "empty-weights": (lambda m: (m / "model.safetensors").write_bytes(b""), r"model.safetensors: corrupt or truncated safetensors \(0 bytes"),
    "truncated-weights": (lambda m: _truncate(m / "model.safetensors", 100_000), r"model.safetensors: corrupt or truncated safetensors \(100000 bytes, its header describes"),
    "foreign-weights": (lambda m: (m / "model.safetensors").write_bytes(b"PK\x03\x04" * 4000), r"model.safetensors: corrupt or truncated safetensors \(header of"),
    "bad-header": (lambda m: (m / "model.safetensors").write_bytes(b"\x04\x00\x00\x00\x00\x00\x00\x00{oop"), r"model.safetensors: corrupt safetensors header"),
    "missing-shard": (_shard, r"missing .*model-00002-of-00002.safetensors \(listed in model.safetensors.index.json\)"),
    "no-tokenizer": (lambda m: [(m / n).unlink() for n in ("tokenizer.json", "tokenizer_config.json")], r"has no tokenizer \(tokenizer.json or tokenizer_config.json\)"),
    "bad-tokenizer": (lambda m: (m / "tokenizer.json").write_text(""), r"tokenizer.json: not valid JSON"),
    "bad-settings": (lambda m: (m / "marc_vlm.json").write_text("frame_size: 56"), r"marc_vlm.json: not valid JSON"),
    "list-settings": (lambda m: (m / "marc_vlm.json").write_text("[56]"), r"marc_vlm.json: expected a JSON object, got list"),
    "unknown-settings": (lambda m: (m / "marc_vlm.json").write_text('{"frame_sise": 56}'), r"marc_vlm.json: unknown field\(s\) 'frame_sise'"),
}  # fmt: skip


@pytest.mark.parametrize("case", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_model_folder_names_the_file(saved, case):
    damage, message = DAMAGE[case]
    damage(saved)
    with pytest.raises(ModelFolderError, match=message):
        VideoVLM.from_pretrained(saved)


def test_a_missing_model_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="model folder not found: .*nowhere"):
        VideoVLM.from_pretrained(tmp_path / "nowhere")


def test_a_folder_without_marc_settings_loads_with_defaults(saved):
    (saved / "marc_vlm.json").unlink()  # a plain transformers checkpoint has none
    assert VideoVLM.from_pretrained(saved).frame_size is None


def test_weights_without_a_parameter_of_the_config_are_refused(saved):
    from safetensors.torch import load_file, save_file

    state = load_file(saved / "model.safetensors")
    dropped = sorted(state)[3]
    del state[dropped]
    save_file(state, saved / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelFolderError, match=r"lack 1 parameter\(s\) of its config.json"):
        VideoVLM.from_pretrained(saved)


def test_weights_of_another_shape_than_the_config_are_refused(saved):
    config = json.loads((saved / "config.json").read_text())
    config["text_config"]["intermediate_size"] *= 2
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match=r"cannot load the saved model .*model \(Runtime"):
        VideoVLM.from_pretrained(saved)
