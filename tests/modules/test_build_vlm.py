"""A stage's model settings that name something missing fail with an error naming it."""

import pytest

from marc.modules.vlm_stage import build_vlm


def test_init_from_naming_a_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"init_from names a missing model folder: .*nope"):
        build_vlm(init_from=str(tmp_path / "nope"))


def test_an_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="architecture must be one of .*'qwen3'"):
        build_vlm(architecture="qwen3")
