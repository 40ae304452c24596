"""Differences over seeds: the bootstrap over seeds and questions, the seed folders, the run."""

from __future__ import annotations

import json

import pytest

from marc.eval import report, seeds
from marc.eval.sweep import QuestionResult


def _answers(correct):
    return [
        QuestionResult(f"q{i}", "count", bool(c), True, 4, 0.1, False, "")
        for i, c in enumerate(correct)
    ]


def test_bootstrap_over_seeds_centres_on_the_mean_difference():
    per_seed = [
        (_answers([1] * 30 + [0] * 10), _answers([0] * 10 + [1] * 10 + [0] * 20)),  # +0.5
        (_answers([1] * 40), _answers([1] * 20 + [0] * 20)),  # +0.5
    ]
    result = seeds.bootstrap_over_seeds(per_seed)
    assert result["per_seed"] == pytest.approx([0.5, 0.5]) and result["mean"] == pytest.approx(0.5)
    low, high = result["ci95"]
    assert 0.3 < low < 0.5 < high < 0.7
    spread = seeds.bootstrap_over_seeds([(_answers([1] * 40), _answers([1] * 40)), per_seed[1]])
    assert spread["ci95"][0] < 0.25 < spread["ci95"][1]  # seeds that disagree widen it


def test_seed_folders_link_the_shared_inputs(tmp_path):
    artifacts = tmp_path / "artifacts"
    for name in seeds.SHARED:
        (artifacts / name).mkdir(parents=True)
    folder = seeds.seed_folder(artifacts, 3)
    assert (folder / "configs" / "cgrpo.yaml").is_file()
    for name in seeds.SHARED:
        assert (folder / "artifacts" / name).resolve() == (artifacts / name).resolve()
    assert seeds.seed_folder(artifacts, 3) == folder  # a second call reuses the folder


def test_the_seed_report_compares_each_seed_with_the_main_report(
    short_clips_dataset, tiny_vlm_dir, tmp_path, monkeypatch
):
    from .conftest import make_artifacts

    artifacts = make_artifacts(tmp_path / "artifacts", tiny_vlm_dir)
    common = [
        "--artifacts",
        str(artifacts),
        "--data-root",
        str(short_clips_dataset),
        "--max-new-tokens",
        "3",
    ]
    report.main([*common, "--max-frames", "64", "--budgets", "1", "--compressors", "UniformFrames"])

    def trained(artifacts_dir, seed):  # stands in for training: every seed is the same model
        return artifacts_dir

    monkeypatch.setattr(seeds, "train_seed", trained)
    summary = seeds.main([*common, "--seeds", "0", "1"])
    names = {c["comparison"] for c in summary["comparisons"]}
    assert names == {
        "cgrpo - warmup",
        "cgrpo - teacher (all frames)",
        "cgrpo - best training-free (UniformFrames)",
    }
    same = next(c for c in summary["comparisons"] if c["comparison"] == "cgrpo - warmup")
    assert same["mean"] == 0 and same["ci95"] == [0.0, 0.0]  # identical students
    assert json.loads((artifacts / "report/seeds.json").read_text())["seeds"] == [0, 1]
    assert "cgrpo - warmup" in (artifacts / "report/seeds.md").read_text()


@pytest.mark.parametrize("stage", ["warmup", "cgrpo"])
def test_the_seed_runs_arguments_instantiate_the_stage_configs(stage, tmp_path, monkeypatch):
    # The arguments train_seed passes to main.py fit must build the stage as its YAML says
    # (an option that clashes with the configs' callbacks would fail every seed run).
    from marc.cli import MARCCLI

    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(seeds.REPO / "configs", target_is_directory=True)
    cli = MARCCLI(args=seeds.stage_arguments(stage, 7), run=False)
    assert cli.model.hparams.seed == 7 and cli.trainer is not None
