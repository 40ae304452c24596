"""configs/paper/ instantiates and runs a step on the small real-layout Qwen2.5-VL checkpoint.

Each config is used as written, with its /path/to/... placeholders replaced by the test's
folders (the checkpoint, a tiny SigLIP, a Video-R1-schema dataset), on the CPU, and with
shorter generations; they run in order in one working folder, as a user runs them:
retriever (zero-shot memory), teacher evaluation, C-GRPO (one step), student evaluation.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from main import main

PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper"
CPU = ["--trainer.accelerator=cpu", "--trainer.devices=1"]


def _placed(value, places: dict):
    if isinstance(value, dict):
        return {k: _placed(v, places) for k, v in value.items()}
    if isinstance(value, list):
        return [_placed(v, places) for v in value]
    if isinstance(value, str):
        for placeholder, path in places.items():
            value = value.replace(placeholder, str(path))
    return value


def _config(name: str, places: dict, folder: Path) -> str:
    """configs/paper/NAME.yaml with its placeholders set, and short teacher generations."""
    config = _placed(yaml.safe_load((PAPER / f"{name}.yaml").read_text()), places)
    for callback in config.get("trainer", {}).get("callbacks") or []:
        if callback["class_path"] == "callbacks.teacher.TeacherCallback":
            callback["init_args"].update(num_samples=2, max_new_tokens=6)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def chain(tmp_path_factory, qwen_checkpoint_dir, tiny_siglip_dir, video_r1_dataset):
    folder = tmp_path_factory.mktemp("paper")
    places = {
        "/path/to/Qwen2.5-VL-3B-Instruct": qwen_checkpoint_dir,
        "/path/to/siglip-so400m-patch14-384": tiny_siglip_dir,
        "/path/to/Video-R1/Video-R1-260k.json": video_r1_dataset / "Video-R1-test.json",
        "/path/to/Video-R1": video_r1_dataset,
        "/path/to/eval/eval_videomme.json": video_r1_dataset / "Video-R1-test.json",
        "/path/to/eval": video_r1_dataset,
    }
    configs = {
        name: _config(name, places, folder) for name in ("retriever", "teacher", "cgrpo", "eval")
    }
    previous = Path.cwd()
    os.chdir(folder)
    try:
        results = {"retriever": main(["fit", "--config", configs["retriever"], *CPU])}
        results["teacher"] = main(
            ["test", "--config", configs["teacher"], *CPU, "--model.max_new_tokens=6"]
        )
        results["cgrpo"] = main(
            [
                "fit",
                "--config",
                configs["cgrpo"],
                *CPU,
                "--trainer.max_steps=1",
                "--model.max_new_tokens=6",
            ]
        )
        results["eval"] = main(
            ["test", "--config", configs["eval"], *CPU, "--model.max_new_tokens=6"]
        )
    finally:
        os.chdir(previous)
    return folder, results


@pytest.mark.slow
def test_the_retriever_config_builds_a_zero_shot_memory_with_transnetv2(chain):
    folder, results = chain
    callback = next(c for c in results["retriever"].trainer.callbacks if hasattr(c, "counts"))
    # The subset is all 6 rows; 3 distinct videos are indexed, the 2 image rows are not.
    assert callback.counts == {"videos": 3, "skipped": 0, "image_rows": 2}
    assert type(callback.segmenter).__name__ == "TransNetV2Segmenter" and callback.k == 3
    assert (folder / "artifacts/paper/retriever/retriever.json").is_file()


@pytest.mark.slow
def test_the_teacher_is_the_checkpoint_on_every_frame_at_1_fps(chain, qwen_checkpoint_dir):
    cli = chain[1]["teacher"]
    assert cli.model.hparams.init_from == str(qwen_checkpoint_dir)
    assert type(cli.model.compressor).__name__ == "Identity" and not cli.model.use_retrieval
    assert (cli.datamodule.hparams.fps, cli.datamodule.hparams.max_frames) == (1.0, 64)
    assert 0.0 <= float(cli.trainer.callback_metrics["test/acc"]) <= 1.0


@pytest.mark.slow
def test_cgrpo_runs_a_step_with_the_papers_settings(chain, qwen_checkpoint_dir):
    folder, results = chain
    cli = results["cgrpo"]
    model, hp = cli.model, cli.model.hparams
    assert hp.init_from == str(qwen_checkpoint_dir)  # no warmup stage
    assert (hp.num_generations, hp.beta, hp.budget_frames) == (8, 0.04, 1)
    assert type(model.compressor).__name__ == "MemoryAwareMerge" and model.use_retrieval
    assert model.reward_fn.rewards[2].tau == 0.6
    assert cli.trainer.optimizers[0].defaults["lr"] == pytest.approx(1e-6)
    assert type(cli.trainer.lr_scheduler_configs[0].scheduler).__name__ == "CosineAnnealingLR"
    assert cli.trainer.precision == "bf16-mixed"
    assert cli.datamodule.hparams.subset_size == 5000 and cli.datamodule.load_retriever().k == 3
    assert cli.trainer.global_step == 1
    assert bool(cli.trainer.callback_metrics["train/loss"].isfinite())
    assert (folder / "artifacts/paper/cgrpo/model/config.json").is_file()


@pytest.mark.slow
def test_eval_tests_the_student_with_retrieval_at_one_frame(chain):
    cli = chain[1]["eval"]
    assert cli.model.hparams.init_from == "artifacts/paper/cgrpo/model"
    assert cli.model.use_retrieval and cli.datamodule.load_retriever().k == 3
    assert 0.0 <= float(cli.trainer.callback_metrics["test/acc"]) <= 1.0
