"""A run killed with SIGKILL mid-epoch and resumed with ``--ckpt_path=last`` repeats the
uninterrupted run step for step (losses and rewards read from TensorBoard event files).

Each stage runs three times in child processes (``python main.py fit``): once to the end;
once killed right after a mid-epoch checkpoint; once resumed from that checkpoint in the
killed run's folder. The run spans three epochs of three batches, so the resumed run
continues an epoch that is not the first: its order and its position in it both matter.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.child_runs import REPO, run_and_kill, run_main, scalars

EPOCHS, BATCHES, EVERY = 3, 3, 2
STEPS = EPOCHS * BATCHES
TINY = [
    "--trainer.accelerator=cpu",
    f"--trainer.max_epochs={EPOCHS}",
    f"--trainer.limit_train_batches={BATCHES}",
    "--trainer.limit_val_batches=0",
    "--trainer.log_every_n_steps=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--data.generator.num_videos=6",
    "--data.generator.num_frames=16",
    "--data.max_frames=16",
    "--data.batch_size=2",
    "--data.eval_batch_size=2",
]


def checkpoints_yaml(extra_callbacks: str = "") -> str:
    """A config layered over the stage's: its mid-epoch checkpoint every EVERY steps."""
    return (
        "trainer:\n"
        "  callbacks:\n"
        "    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
        "      init_args: {dirpath: checkpoints, save_last: true, save_top_k: 0, "
        f"every_n_train_steps: {EVERY}}}\n" + extra_callbacks
    )


def three_runs(tmp_path: Path, stage: str, overrides: str, *args: str) -> dict[str, Path]:
    """Uninterrupted, killed and resumed runs of ``stage``; returns each folder."""
    folders = {name: tmp_path / name for name in ("full", "killed")}
    for folder in folders.values():
        folder.mkdir()
        (folder / "overrides.yaml").write_text(overrides)
    command = ["fit", "--config", str(REPO / f"configs/{stage}.yaml")]
    command += ["--config", "overrides.yaml", *TINY, *args]
    run_main(folders["full"], *command)
    killed_at = run_and_kill(
        folders["killed"], folders["killed"] / "checkpoints/last.ckpt", 4, *command
    )
    assert killed_at < STEPS
    run_main(folders["killed"], *command, "--ckpt_path=last")
    return folders


def assert_same_sequence(
    folders: dict[str, Path], stage: str, tag: str, every_step: bool = True
) -> None:
    """The killed and resumed runs logged what the uninterrupted one did at their steps
    (every step for a step metric; the epochs' ends for an epoch one)."""
    full = scalars(folders["full"] / f"artifacts/logs/{stage}", tag)
    assert list(full) == ["version_0"]
    expected = full["version_0"]
    runs = scalars(folders["killed"] / f"artifacts/logs/{stage}", tag)
    killed, resumed = runs.get("version_0", {}), runs["version_1"]
    if every_step:
        assert sorted(expected) == list(range(STEPS)), expected
        # The resumed run logs every step after its checkpoint, up to the end.
        assert max(resumed) == STEPS - 1 and min(resumed) <= 5
        assert set(range(min(resumed), STEPS)) == set(resumed)
    else:
        assert len(expected) == EPOCHS and set(resumed) <= set(expected)
        assert max(resumed) == max(expected)
    for name, run in (("killed", killed), ("resumed", resumed)):
        for step, value in run.items():
            assert value == pytest.approx(expected[step], rel=1e-6, abs=1e-7), (tag, name, step)


@pytest.mark.slow
def test_the_teacher_stage_resumes_exactly_after_sigkill(tmp_path):
    folders = three_runs(tmp_path, "teacher", checkpoints_yaml(), "--model.max_new_tokens=6")
    for tag in ("train/loss", "train/ce"):
        assert_same_sequence(folders, "teacher", tag)
    # The epoch the run was killed in counts its samples from before the kill too.
    assert_same_sequence(folders, "teacher", "train/samples", every_step=False)


@pytest.mark.slow
def test_cgrpo_resumes_exactly_after_sigkill(tmp_path, tiny_vlm_dir):
    teacher = (
        "    - class_path: callbacks.teacher.TeacherCallback\n"
        f"      init_args: {{path: {tiny_vlm_dir}, num_samples: 2, max_new_tokens: 6, "
        "cache_dir: teacher_cache}\n"
        "prerequisites: null\n"
        # A random policy earns no accuracy or format reward: this one varies in a group.
        "model:\n"
        "  init_args:\n"
        "    rewards:\n"
        "      - class_path: tests.child_rewards.TextLengthReward\n"
        "      - class_path: marc.rl.rewards.RetentionReward\n"
    )
    folders = three_runs(
        tmp_path,
        "cgrpo",
        checkpoints_yaml(teacher),
        f"--model.init_from={tiny_vlm_dir}",
        "--model.use_retrieval=false",
        "--data.retriever_dir=null",
        "--model.num_generations=2",
        "--model.max_new_tokens=6",
    )
    for tag in ("train/loss", "train/reward", "train/kl", "train/a_teacher"):
        assert_same_sequence(folders, "cgrpo", tag)
    # The sequences compared are not constant: the policy moved away from its reference.
    full = scalars(folders["full"] / "artifacts/logs/cgrpo", "train/kl")["version_0"]
    assert max(full.values()) > 0
