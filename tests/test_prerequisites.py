"""Missing stage inputs are built once with their own config, or named with the command."""

import json
import logging
import os
import subprocess
import sys
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


BUILD_AS_RANK = """
import json, sys
from marc.prerequisites import Artifact, Prerequisites, ensure_prerequisites
spec = Prerequisites(artifacts=[Artifact(**json.loads(sys.argv[1]))], wait_timeout_s=300)
print("BUILT", json.dumps(ensure_prerequisites(spec)))
"""


@pytest.mark.slow
def test_under_two_ranks_rank_zero_builds_once_and_the_other_waits(tmp_path):
    """Two processes started at once, as torchrun starts them, ask for the same artifact."""
    artifact = {
        "path": str(tmp_path / "built"),
        "config": str(REPO / "configs/teacher.yaml"),
        "args": [
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=0",
            "--trainer.enable_progress_bar=false",
            "--trainer.callbacks=[]",
            "--trainer.enable_checkpointing=false",
            "--data.generator.num_videos=3",
            "--data.generator.num_frames=16",
            "--data.max_frames=16",
            "--data.batch_size=2",
            f"--model.export_dir={tmp_path / 'built'}",
        ],
    }
    # torchrun's variables: a build that kept them would wait for a second process forever.
    torchrun = {
        "WORLD_SIZE": "2",
        "LOCAL_WORLD_SIZE": "2",
        "GROUP_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29533",
        "TORCHELASTIC_RUN_ID": "test",
    }
    processes = []
    for rank in (0, 1):
        env = {**os.environ, **torchrun, "RANK": str(rank), "LOCAL_RANK": str(rank)}
        env["PYTHONPATH"] = str(REPO)
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", BUILD_AS_RANK, json.dumps(artifact)],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, out[-2000:] + err[-4000:]
    (out0, err0), (out1, err1) = outputs
    assert "BUILT " + json.dumps([artifact["path"]]) in out0
    assert "BUILT []" in out1  # rank 1 built nothing: it waited for rank 0's artifact
    assert "waiting for global rank 0 to build" in err1 and "building it" not in err1
    assert "is missing: building it" in err0 and "waiting" not in err0
    assert (tmp_path / "built/config.json").is_file()
    # One build: one training run logged.
    assert [p.name for p in (tmp_path / "artifacts/logs/teacher").iterdir()] == ["version_0"]


def test_a_shipped_asset_is_installed_instead_of_built(tmp_path):
    from marc.assets import AssetError, write_asset

    model = tmp_path / "trained"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"weights")
    asset = write_asset(model, tmp_path / "asset", {"trained_by": "test"})
    target = tmp_path / "artifacts/teacher/model"
    spec = Prerequisites(
        artifacts=[Artifact(path=str(target), config="configs/none.yaml", source=str(asset))]
    )
    assert ensure_prerequisites(spec) == [str(target)]
    assert (target / "weights.bin").read_bytes() == b"weights"
    assert "trained_by" in (target / "ASSET.json").read_text()
    # A file that does not match its sum is refused, naming it, and nothing is installed.
    (asset / "weights.bin").write_bytes(b"tampered")
    other = tmp_path / "elsewhere"
    spec.artifacts[0].path = str(other)
    with pytest.raises(AssetError, match="weights.bin: sha256"):
        ensure_prerequisites(spec)
    assert not other.exists()
