"""Missing stage inputs are built once with their own config, or named with the command."""

import logging
from pathlib import Path

import pytest

from marc.cli import MARCCLI
from marc.prerequisites import (
    Artifact,
    MissingPrerequisiteError,
    Prerequisites,
    ensure_prerequisites,
)

REPO = Path(__file__).parents[1]


def test_missing_artifact_without_building_names_the_command(tmp_path):
    spec = Prerequisites(
        build_missing=False,
        artifacts=[Artifact(path=str(tmp_path / "teacher"), config="configs/teacher.yaml")],
    )
    with pytest.raises(MissingPrerequisiteError, match="main.py fit --config configs/teacher.yaml"):
        ensure_prerequisites(spec)


def test_existing_artifacts_are_not_rebuilt(tmp_path):
    (tmp_path / "model").mkdir()
    spec = Prerequisites(artifacts=[Artifact(path=str(tmp_path / "model"), config="nope.yaml")])
    assert ensure_prerequisites(spec) == []


def test_missing_config_is_named(tmp_path):
    spec = Prerequisites(artifacts=[Artifact(path=str(tmp_path / "x"), config="configs/nope.yaml")])
    with pytest.raises(FileNotFoundError, match="configs/nope.yaml"):
        ensure_prerequisites(spec)


@pytest.mark.slow
def test_missing_artifact_is_built_with_its_config(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    teacher = [
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false",
        "--trainer.callbacks=[]",
        "--trainer.logger=false",
        "--trainer.enable_checkpointing=false",
        "--data.generator.num_videos=3",
        "--data.generator.num_frames=16",
        "--data.max_frames=16",
        "--data.batch_size=2",
        f"--model.export_dir={tmp_path / 'built'}",
    ]
    spec = Prerequisites(
        artifacts=[
            Artifact(
                path=str(tmp_path / "built"),
                config=str(REPO / "configs/teacher.yaml"),
                args=teacher,
            )
        ]
    )
    with caplog.at_level(logging.WARNING, logger="marc.prerequisites"):
        built = ensure_prerequisites(spec)
    assert built == [str(tmp_path / "built")]
    assert (tmp_path / "built/config.json").is_file()
    assert "is missing: building it" in caplog.text
    assert ensure_prerequisites(spec) == []  # built once


def test_cli_reads_the_prerequisites_section(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = MARCCLI(args=["--config", str(REPO / "configs/cgrpo.yaml")], run=False)
    section = cli.config["prerequisites"]
    paths = [a["path"] if isinstance(a, dict) else a.path for a in section["artifacts"]]
    assert paths == ["artifacts/retriever", "artifacts/teacher/model", "artifacts/warmup/model"]
