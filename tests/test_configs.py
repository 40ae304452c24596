"""Every YAML under configs/ parses and instantiates (model, data, trainer) without running."""

from pathlib import Path

import pytest

from main import main
from marc.cli import MARCCLI

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_there_are_stage_configs():
    names = {p.stem for p in CONFIGS}
    assert {"teacher", "warmup"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_instantiates(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # loggers and checkpoints would write relative to here
    cli = MARCCLI(args=["--config", str(config)], run=False)
    assert cli.model is not None and cli.datamodule is not None and cli.trainer is not None


def test_full_teacher_schedule_layers_over_the_stage_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = Path(__file__).parents[1] / "configs"
    demo = MARCCLI(args=["--config", str(root / "teacher.yaml")], run=False)
    full = MARCCLI(
        args=["--config", str(root / "teacher.yaml"), "--config", str(root / "full/teacher.yaml")],
        run=False,
    )
    assert (demo.trainer.max_epochs, demo.trainer.limit_train_batches) == (15, 53)
    assert (full.trainer.max_steps, full.trainer.limit_train_batches) == (2000, 1.0)
    # Only the schedule changes: same model (but its learning-rate schedule), data and
    # callbacks.
    schedule = full.config.model.init_args.pop("lr_scheduler")
    assert schedule.init_args.total_steps == full.trainer.max_steps
    assert demo.config.model.init_args.pop("lr_scheduler") is None
    assert full.config.model == demo.config.model
    assert full.config.data == demo.config.data
    assert [type(c) for c in full.trainer.callbacks] == [type(c) for c in demo.trainer.callbacks]


@pytest.mark.parametrize(
    "compressor",
    [
        *(
            "UniformFrames",
            "TemporalMeanPool",
            "ToMe",
            "RandomDrop",
            "MemoryAwareMerge",
            "Identity",
        ),
        *("VidCom2", "FastVID", "VisionZip", "DyCoke", "TokenToMe"),
    ],
)
def test_compressor_swaps_from_the_command_line(compressor, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Path(__file__).parents[1] / "configs/warmup.yaml"
    cli = MARCCLI(
        args=["--config", str(config), f"--model.compressor=marc.compression.{compressor}"],
        run=False,
    )
    assert type(cli.model.compressor).__name__ == compressor


def test_the_teacher_stage_has_no_compressor_to_swap(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = Path(__file__).parents[1] / "configs/teacher.yaml"
    teacher = MARCCLI(args=["--config", str(config)], run=False)
    assert type(teacher.model.compressor).__name__ == "Identity"
    assert not teacher.model.use_retrieval
    with pytest.raises(SystemExit):
        MARCCLI(
            args=["--config", str(config), "--model.compressor=marc.compression.ToMe"], run=False
        )
    assert "compressor" in capsys.readouterr().err


def test_help_works(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--help"])
    assert info.value.code == 0
    assert "--model" in capsys.readouterr().out


def test_a_missing_config_file_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(tmp_path / "nope.yaml")])
    assert info.value.code != 0
    assert "nope.yaml" in capsys.readouterr().err


@pytest.mark.parametrize("stage", ["retriever", "teacher", "warmup", "cgrpo"])
def test_every_training_stage_saves_a_resumable_checkpoint_mid_epoch(stage, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Path(__file__).parents[1] / f"configs/{stage}.yaml"
    cli = MARCCLI(args=["--config", str(config)], run=False)
    steps = [
        c._every_n_train_steps
        for c in cli.trainer.callbacks
        if type(c).__name__ == "ModelCheckpoint" and c.save_last
    ]
    # A checkpoint more often than once an epoch, which --ckpt_path=last resumes from.
    assert any(0 < n < cli.trainer.limit_train_batches for n in steps), steps
