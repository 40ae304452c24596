"""The shipped teacher: making an asset of a trained folder, checking a retrained one, and
the asset that ships in marc/assets/teacher."""

from __future__ import annotations

import json

import pytest
import yaml

from marc.assets import ASSETS, INFO, verify_asset, write_asset
from marc.eval import teacher_asset
from marc.models.vlm import VideoVLM

REPO = ASSETS.parent.parent


@pytest.fixture(scope="module")
def written(tmp_path_factory, tiny_dataset, tiny_vlm_dir):
    asset = tmp_path_factory.mktemp("asset") / "teacher"
    info = teacher_asset.write(tiny_vlm_dir, asset, data_root=str(tiny_dataset))
    return asset, info


def test_write_records_the_measured_accuracy_and_verifies(written, tiny_dataset, tiny_vlm_dir):
    asset, info = written
    verify_asset(asset)
    measured = teacher_asset.measure(tiny_vlm_dir, data_root=str(tiny_dataset))
    assert json.loads((asset / INFO).read_text())["test_accuracy"] == measured["accuracy"]
    assert info["test_questions"] == measured["test_questions"] > 0
    assert info["trained_with"] == teacher_asset.TRAINING_CONFIGS
    VideoVLM.from_pretrained(asset)  # the asset is a loadable model folder


def test_check_passes_for_the_same_model(written, tiny_dataset, tiny_vlm_dir):
    asset, _ = written
    result = teacher_asset.check(tiny_vlm_dir, asset, tolerance=0.0, data_root=str(tiny_dataset))
    assert result["difference"] == 0.0


def test_check_fails_naming_both_figures_when_the_accuracy_differs(
    written, tmp_path, tiny_dataset, tiny_vlm_dir
):
    asset, info = written
    claimed = info["test_accuracy"] + (0.5 if info["test_accuracy"] < 0.5 else -0.5)
    other = write_asset(asset, tmp_path / "claims", {**info, "test_accuracy": claimed})
    with pytest.raises(SystemExit, match="differs from the shipped teacher's"):
        teacher_asset.check(tiny_vlm_dir, other, tolerance=0.05, data_root=str(tiny_dataset))


def test_the_shipped_teacher_verifies_loads_and_is_what_the_student_stages_install():
    shipped = ASSETS / "teacher"
    verify_asset(shipped)
    info = json.loads((shipped / INFO).read_text())
    assert 0.0 <= info["test_accuracy"] <= 1.0 and info["test_questions"] > 0
    assert VideoVLM.from_pretrained(shipped).frame_size == 56
    for stage in ("warmup", "cgrpo"):
        config = yaml.safe_load((REPO / "configs" / f"{stage}.yaml").read_text())
        teacher = [a for a in config["prerequisites"]["artifacts"] if "teacher" in a["path"]]
        assert teacher == [
            {
                "path": "artifacts/teacher/model",
                "config": "configs/teacher.yaml",
                "source": "teacher",
            }
        ]
