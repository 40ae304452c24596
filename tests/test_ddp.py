"""Every stage runs through ``main.py`` on two CPU processes (DDP, gloo), the VLM stages in
``bf16-mixed``, in one folder, each on what the one before it wrote (as users chain them):
retriever, teacher, warmup, C-GRPO, then the evaluation on two processes and on one.

What each stage shows: the retriever's clip memory is written once, by rank 0, for every
video; the student stages read it on both ranks; the teacher cache is written by rank 0
alone with the values both ranks computed, each on its own shard; the evaluation's
accuracy over both shards equals a one-process evaluation of the same questions (an odd
number of them: the evaluation shards do not pad, so each question counts once).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.child_models import answered_right
from tests.child_runs import REPO, run_main, scalars

DATA = [
    "--data.generator.num_videos=6",
    "--data.generator.num_frames=16",
    "--data.max_frames=16",
    "--data.batch_size=2",
    "--data.eval_batch_size=2",
]
TWO_PROCESSES = ["--trainer.accelerator=cpu", "--trainer.strategy=ddp", "--trainer.devices=2"]
SHORT = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.log_every_n_steps=1",
]
VLM = ["--trainer.precision=bf16-mixed", "--model.max_new_tokens=6"]
EVAL_QUESTIONS = 3  # odd: padded shards would score one question twice
CGRPO_CALLBACKS = """
trainer:
  callbacks:
    - class_path: callbacks.teacher.TeacherCallback
      init_args: {path: artifacts/teacher/model, num_samples: 2, max_new_tokens: 6, cache_dir: artifacts/teacher_cache}
"""


def stage(workdir: Path, subcommand: str, config: str, *args: str):
    return run_main(workdir, subcommand, "--config", str(REPO / f"configs/{config}.yaml"), *args)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("ddp_stages")


@pytest.fixture(scope="module")
def chain(workdir):
    """Run every stage in order; returns each run's completed process."""
    (workdir / "cgrpo_callbacks.yaml").write_text(CGRPO_CALLBACKS)
    evaluation = [
        *VLM,
        "--model.class_path=tests.child_models.KnownAnswersEvaluation",
        f"--data.limit_eval={EVAL_QUESTIONS}",
        "--data.eval_batch_size=1",
    ]
    runs = {}
    runs["retriever"] = stage(workdir, "fit", "retriever", *DATA, *TWO_PROCESSES, *SHORT)
    common = [*DATA, *TWO_PROCESSES, *SHORT, "--trainer.limit_val_batches=1", *VLM]
    runs["teacher"] = stage(workdir, "fit", "teacher", *common)
    runs["warmup"] = stage(workdir, "fit", "warmup", *common)
    runs["cgrpo"] = stage(
        workdir,
        "fit",
        "cgrpo",
        "--config",
        "cgrpo_callbacks.yaml",
        *common,
        "--model.num_generations=2",
    )
    runs["eval"] = stage(workdir, "test", "eval", *DATA, *TWO_PROCESSES, *evaluation)
    runs["eval_one_process"] = stage(
        workdir, "test", "eval", *DATA, "--trainer.accelerator=cpu", *evaluation
    )
    return runs


def output(run) -> str:
    return run.stdout + run.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["retriever", "teacher", "warmup", "cgrpo", "eval"])
def test_every_stage_runs_on_two_gloo_processes(chain, name):
    text = output(chain[name])
    assert "distributed_backend=gloo" in text
    assert "All distributed processes registered. Starting with 2 processes" in text


@pytest.mark.slow
@pytest.mark.parametrize("name", ["teacher", "warmup", "cgrpo", "eval"])
def test_every_vlm_stage_runs_in_bf16_mixed_on_the_cpu(chain, workdir, name):
    assert "Using bfloat16 Automatic Mixed Precision (AMP)" in output(chain[name])
    saved = workdir / f"artifacts/logs/{name}/version_0/config.yaml"
    assert "precision: bf16-mixed" in saved.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["teacher", "warmup", "cgrpo"])
def test_each_trained_stage_logs_finite_losses_and_exports_once(chain, workdir, name):
    losses = scalars(workdir / f"artifacts/logs/{name}", "train/loss")["version_0"]
    assert losses and all(abs(v) < float("inf") for v in losses.values())
    assert (workdir / f"artifacts/{name}/model/config.json").is_file()


@pytest.mark.slow
def test_rank_zero_indexes_every_video_into_the_memory_both_ranks_read(chain, workdir):
    manifest = json.loads((workdir / "artifacts/retriever/memory/manifest.json").read_text())
    assert manifest["count"] >= 6  # at least one clip of each of the 6 videos, not a shard
    # The students train on retrieved clips (use_retrieval): under DDP a rank without the
    # memory would have stopped the run, so both read it.
    tokens = scalars(workdir / "artifacts/logs/warmup", "train/visual_tokens")["version_0"]
    assert set(tokens.values()) == {4.0}  # the retrieved clip at the one-frame budget


@pytest.mark.slow
def test_the_teacher_cache_is_one_file_with_both_ranks_shards(chain, workdir):
    folders = list((workdir / "artifacts/teacher_cache").iterdir())
    assert len(folders) == 1
    assert [p.name for p in folders[0].iterdir()] == ["entries.json"]  # rank 0 wrote it alone
    entries = json.loads((folders[0] / "entries.json").read_text())["entries"]
    # 2 steps x 2 questions on each of 2 ranks, no question drawn by both.
    assert len(entries) == 8


@pytest.mark.slow
def test_the_accuracy_over_both_shards_is_the_one_process_accuracy(chain, workdir):
    runs = scalars(workdir / "artifacts/logs/eval", "test/acc")
    two, one = runs["version_0"], runs["version_1"]
    assert two == one
    rows = [json.loads(line) for line in (workdir / "data/synthetic/test.jsonl").open()]
    expected = sum(answered_right(r["problem_id"]) for r in rows[:EVAL_QUESTIONS])
    # 1 of 3: a padded shard would have scored question 0 (wrong) again, giving 1 of 4.
    assert 0 < expected < EVAL_QUESTIONS
    assert list(two.values()) == [pytest.approx(expected / EVAL_QUESTIONS)]
    # Each question scored once over both shards (a padded shard would make it 4).
    questions = scalars(workdir / "artifacts/logs/eval", "test/questions")
    assert [list(run.values()) for run in questions.values()] == [[EVAL_QUESTIONS]] * 2
    for kind in ("attribute", "count", "motion"):
        tag = f"test/acc_{kind}"
        per_kind = scalars(workdir / "artifacts/logs/eval", tag)
        assert per_kind["version_0"] == per_kind["version_1"], tag
