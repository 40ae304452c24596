"""Every VLM stage loads a Qwen2.5-VL checkpoint in the hub's layout with --model.init_from
and runs on Video-R1-schema rows (videos and images, every problem type): one SFT step,
one C-GRPO step and one evaluation, through ``main([...])`` as users run them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from main import main

REPO = Path(__file__).resolve().parent
CONFIGS = REPO.parent / "configs"


def _data(root: Path) -> list[str]:
    annotations = str(root / "Video-R1-test.json")
    return [
        f"--data.data_root={root}",
        f"--data.train_file={annotations}",
        f"--data.val_file={annotations}",
        f"--data.test_file={annotations}",
        "--data.frame_size=56",
        "--data.fps=2",
        "--data.max_frames=8",
        "--data.batch_size=6",
        "--data.eval_batch_size=6",
        "--data.retriever_dir=null",
    ]


def _common(checkpoint: Path) -> list[str]:
    return [
        "--trainer.fast_dev_run=1",
        "--trainer.accelerator=cpu",
        "--trainer.logger=false",
        f"--model.init_from={checkpoint}",
        "--model.max_new_tokens=6",
    ]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # configs write artifacts/ relative to the working folder
    return tmp_path


def test_one_sft_step_answers_with_letters(qwen_checkpoint_dir, video_r1_dataset, workdir):
    cli = main(
        [
            "fit", "--config", str(CONFIGS / "teacher.yaml"), *_common(qwen_checkpoint_dir),
            *_data(video_r1_dataset), "--model.answer_with=letter",
            f"--model.export_dir={workdir / 'teacher'}", "--trainer.callbacks=[]",
        ]
    )  # fmt: skip
    assert cli.trainer.global_step == 1
    assert bool(cli.trainer.callback_metrics["train/loss"].isfinite())
    batch = next(iter(cli.datamodule.train_dataloader()))
    assert sorted(batch["data_type"]) == ["image"] * 2 + ["video"] * 4
    targets = dict(zip(batch["problem_id"], cli.model.sft_targets(batch)))
    assert targets["1"].endswith("<answer> A </answer>") and targets["6"].endswith(
        "<answer> B </answer>"
    )
    assert (workdir / "teacher/config.json").is_file()


def test_one_cgrpo_step_with_the_checkpoint_as_teacher(
    qwen_checkpoint_dir, video_r1_dataset, workdir
):
    teacher = {
        "class_path": "callbacks.teacher.TeacherCallback",
        "init_args": {"path": str(qwen_checkpoint_dir), "num_samples": 2, "max_new_tokens": 6,
                      "cache_dir": str(workdir / "cache")},
    }  # fmt: skip
    override = workdir / "override.yaml"
    override.write_text(yaml.safe_dump({"trainer": {"callbacks": [teacher]}}))
    cli = main(
        [
            "fit", "--config", str(CONFIGS / "cgrpo.yaml"), "--config", str(override),
            "--prerequisites=null", *_common(qwen_checkpoint_dir), *_data(video_r1_dataset),
            "--model.use_retrieval=false", "--model.num_generations=2",
            f"--model.export_dir={workdir / 'student'}",
        ]
    )  # fmt: skip
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.global_step == 1 and bool(metrics["train/loss"].isfinite())
    assert float(metrics["train/image_rows"]) == 2.0
    assert "train/a_teacher" in metrics and "train/reward_retention" in metrics


def test_one_evaluation_run(qwen_checkpoint_dir, video_r1_dataset, workdir):
    cli = main(
        [
            "test", "--config", str(CONFIGS / "eval.yaml"), "--prerequisites=null",
            *_common(qwen_checkpoint_dir), *_data(video_r1_dataset), "--model.use_retrieval=false",
        ]
    )  # fmt: skip
    metrics = cli.trainer.callback_metrics
    assert 0.0 <= float(metrics["test/acc"]) <= 1.0
    # The one-frame budget at 56 px: one temporal group, 2 x 2 tokens for the videos and
    # the square picture, 2 x 3 for the 70 x 50 one (read at 56 x 84).
    assert float(metrics["test/visual_tokens"]) == pytest.approx((5 * 4 + 6) / 6)
