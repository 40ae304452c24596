"""Every stage config runs the way users run it: ``main.py fit/test --config configs/STAGE.yaml``.

The five stages run in order through ``main([...])`` (as torchgeo tests its trainers), each
for one batch (``--trainer.fast_dev_run=1``) on a small generated dataset, in one working
folder, so each stage finds what the one before it exported under ``artifacts/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from main import main

REPO = Path(__file__).resolve().parents[1]
SMALL = [
    "--trainer.fast_dev_run=1",
    "--trainer.accelerator=cpu",
    "--data.generator.num_videos=6",
    "--data.generator.num_frames=16",
    "--data.max_frames=16",
    "--data.batch_size=2",
    "--data.eval_batch_size=2",
]
GENERATE = ["--model.max_new_tokens=6"]


def run(subcommand: str, stage: str, *extra: str):
    return main([subcommand, "--config", str(REPO / f"configs/{stage}.yaml"), *SMALL, *extra])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One working folder for the whole chain of stages (configs name relative paths)."""
    return tmp_path_factory.mktemp("stages")


@pytest.fixture(scope="module")
def chain(workdir):
    """Run retriever, teacher, warmup, C-GRPO (fit) and eval (test) in order."""
    import os

    previous = Path.cwd()
    os.chdir(workdir)
    try:
        results = {
            "retriever": run("fit", "retriever"),
            "teacher": run("fit", "teacher", *GENERATE),
            "warmup": run("fit", "warmup", *GENERATE),
            "cgrpo": run("fit", "cgrpo", *GENERATE, "--model.num_generations=2"),
            "eval": run("test", "eval", *GENERATE),
        }
    finally:
        os.chdir(previous)
    return results


@pytest.mark.slow
def test_the_retriever_stage_saves_a_retriever_with_every_video(chain, workdir):
    cli = chain["retriever"]
    assert type(cli.model).__name__ == "RetrieverPretraining"
    assert "train/loss" in cli.trainer.callback_metrics
    manifest = json.loads((workdir / "artifacts/retriever/memory/manifest.json").read_text())
    assert manifest["count"] >= 6  # at least one clip for each of the 6 videos


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "module"),
    [
        ("teacher", "TeacherFinetuning"),
        ("warmup", "CompressorWarmup"),
        ("cgrpo", "CGRPODistillation"),
    ],
)
def test_each_vlm_stage_trains_and_exports_its_model(chain, workdir, stage, module):
    cli = chain[stage]
    assert type(cli.model).__name__ == module
    assert cli.trainer.global_step >= 1
    loss = cli.trainer.callback_metrics["train/loss"]
    assert bool(loss.isfinite())
    settings = json.loads((workdir / f"artifacts/{stage}/model/marc_vlm.json").read_text())
    # The frame size is the data module's, recorded with the model it trained.
    assert settings["frame_size"] == cli.datamodule.frame_size == 56
    assert (workdir / f"artifacts/{stage}/model/config.json").is_file()


@pytest.mark.slow
def test_the_students_read_the_retrieved_clip_and_the_teacher_the_whole_video(chain):
    assert chain["teacher"].model.use_retrieval is False
    assert type(chain["teacher"].model.compressor).__name__ == "Identity"
    for stage in ("warmup", "cgrpo", "eval"):
        assert chain[stage].model.use_retrieval is True
        assert type(chain[stage].model.compressor).__name__ == "MemoryAwareMerge"


@pytest.mark.slow
def test_the_eval_stage_tests_the_cgrpo_student(chain, workdir):
    cli = chain["eval"]
    assert type(cli.model).__name__ == "VideoQAEvaluation"
    assert cli.model.hparams.init_from == "artifacts/cgrpo/model"
    metrics = cli.trainer.callback_metrics
    assert 0.0 <= float(metrics["test/acc"]) <= 1.0
    # One-frame budget: one temporal group of 2 x 2 tokens at 56 px.
    assert float(metrics["test/visual_tokens"]) == 4.0


@pytest.mark.slow
@pytest.mark.parametrize("compressor", ["VidCom2", "FastVID", "VisionZip", "DyCoke", "TokenToMe"])
@pytest.mark.parametrize("vmr", [True, False])
def test_the_eval_stage_tests_every_token_level_compressor(chain, workdir, compressor, vmr):
    import os

    previous = Path.cwd()
    os.chdir(workdir)
    try:
        extra = [] if vmr else ["--model.use_retrieval=false", "--data.retriever_dir=null"]
        cli = run(
            "test", "eval", *GENERATE, f"--model.compressor=marc.compression.{compressor}", *extra
        )
    finally:
        os.chdir(previous)
    assert type(cli.model.compressor).__name__ == compressor
    metrics = cli.trainer.callback_metrics
    # The one-frame budget holds one group's 4 tokens; token-level methods keep exactly 4.
    assert float(metrics["test/visual_tokens"]) == 4.0
    assert 0.0 <= float(metrics["test/acc"]) <= 1.0
