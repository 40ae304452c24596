"""The comparison report: rows for every system and compressor, agreement with the eval stage,
paired intervals, and the files it writes."""

from __future__ import annotations

import json
import shutil

import lightning as L
import pytest

from marc.compression import MemoryAwareMerge
from marc.data.datamodule import VideoQADataModule
from marc.eval import report
from marc.eval.statistics import paired_difference
from marc.eval.sweep import QuestionResult, Setting, evaluate_settings
from marc.modules.evaluation import VideoQAEvaluation

SMALL = dict(max_frames=16, frame_size=56)


def _data(root, **kwargs):
    return VideoQADataModule(data_root=str(root), **SMALL, eval_batch_size=3, **kwargs)


def test_every_training_free_compressor_has_a_row_at_every_budget(tmp_path):
    settings = report.report_settings(tmp_path, budgets=(1, 2))
    names = report.available_compressors()
    assert set(names) >= {"MemoryAwareMerge", "UniformFrames", "TemporalMeanPool", "ToMe"}
    for vmr in (False, True):
        for budget in (1, 2):
            got = {
                s.compressor
                for s in settings
                if s.system == "teacher" and s.vmr == vmr and s.budget_frames == budget
            }
            assert got == set(names)
            assert {s.system for s in settings if s.vmr == vmr and s.budget_frames == budget} == {
                "teacher",
                "warmup",
                "cgrpo",
            }
    assert [s.compressor for s in settings if s.system == "blind"] == [None]
    assert len(settings) == len(set(settings))


@pytest.mark.parametrize("vmr", [False, True])
def test_a_sweep_row_equals_the_eval_stage_on_the_same_setting(short_clips_dataset, artifacts, vmr):
    retriever = str(artifacts / "retriever") if vmr else None
    data = _data(short_clips_dataset, retriever_dir=retriever)
    module = VideoQAEvaluation(
        compressor=MemoryAwareMerge(), budget_frames=1, use_retrieval=vmr,
        init_from=str(artifacts / "cgrpo/model"), max_new_tokens=6,
    )  # fmt: skip
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.test(module, datamodule=data, verbose=False)
    setting = Setting("cgrpo", str(artifacts / "cgrpo/model"), "MemoryAwareMerge", vmr, 1)
    datasets = {vmr: _data(short_clips_dataset, retriever_dir=retriever).dataset("test")}
    results = evaluate_settings(
        [setting], datasets, report.build_compressor, batch_size=3, max_new_tokens=6
    )
    answers = results[setting]
    assert len(answers) == len(datasets[vmr])
    assert sum(a.correct for a in answers) / len(answers) == pytest.approx(metrics["test/acc"])
    assert sum(a.visual_tokens for a in answers) / len(answers) == pytest.approx(
        metrics["test/visual_tokens"]
    )


def test_the_blind_setting_reads_no_visual_tokens(short_clips_dataset, artifacts):
    setting = Setting("blind", str(artifacts / "teacher/model"), None, False, None)
    results = evaluate_settings(
        [setting],
        {False: _data(short_clips_dataset).dataset("test")},
        report.build_compressor,
        max_new_tokens=4,
    )
    assert results[setting] and all(a.visual_tokens == 0 for a in results[setting])


def _answers(correct):
    return [
        QuestionResult(f"q{i}", "count", c, True, 4, 0.1, False, "") for i, c in enumerate(correct)
    ]


def test_paired_difference_and_its_interval():
    same = paired_difference(_answers([1, 0, 1, 0]), _answers([1, 0, 1, 0]))
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0]
    better = paired_difference(_answers([1] * 40), _answers([0] * 20 + [1] * 20))
    assert better["difference"] == pytest.approx(0.5)
    low, high = better["ci95"]
    assert 0.25 < low < 0.5 < high < 0.75
    with pytest.raises(ValueError, match="share no question"):
        paired_difference(
            _answers([1]), [QuestionResult("other", "count", True, True, 4, 0.1, False, "")]
        )


def test_the_report_writes_tables_json_answers_and_plots(
    short_clips_dataset, artifacts, tmp_path, capsys
):
    out = tmp_path / "out"
    report.main([
        "--artifacts", str(artifacts), "--data-root", str(short_clips_dataset), "--max-frames", "16",
        "--budgets", "1", "2", "--compressors", "MemoryAwareMerge", "UniformFrames",
        "--max-new-tokens", "4", "--batch-size", "3", "--output", str(out),
    ])  # fmt: skip
    printed = capsys.readouterr().out
    document = json.loads((out / "report.json").read_text())
    assert set(document) >= {"rows", "plots", "models", "comparisons", "test_questions"}
    required = {"system", "compressor", "vmr", "budget_frames", "accuracy", "per_kind", "format_rate",
                "visual_tokens", "kept_fraction", "ci95_vs_teacher", "questions"}  # fmt: skip
    assert all(required <= set(row) for row in document["rows"])
    teacher = next(
        r
        for r in document["rows"]
        if r["system"] == "teacher" and r["budget_frames"] is None and not r["vmr"]
    )
    assert teacher["ci95_vs_teacher"] == [0.0, 0.0] and teacher["kept_fraction"] == 1.0
    assert {(c["vmr"], c["budget_frames"]) for c in document["comparisons"]} == {
        (False, 1),
        (False, 2),
        (True, 1),
        (True, 2),
    }
    for path in document["plots"]:
        assert path in printed and open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    lines = (out / "answers.jsonl").read_text().splitlines()
    assert len(lines) == sum(r["questions"] for r in document["rows"])
    assert "| C-GRPO student | MemoryAwareMerge | yes |" in (out / "report.md").read_text()
    assert set(document["models"]) == {"teacher", "blind", "warmup", "cgrpo"}
    assert list((artifacts / "logs/report").glob("events.out.tfevents.*"))


def test_a_missing_model_is_named_or_marked_not_built(short_clips_dataset, artifacts, tmp_path):
    partial = tmp_path / "artifacts"
    shutil.copytree(artifacts / "teacher", partial / "teacher")
    args = ["--artifacts", str(partial), "--data-root", str(short_clips_dataset), "--max-frames", "16",
            "--budgets", "1", "--compressors", "UniformFrames", "--max-new-tokens", "2", "--output", str(tmp_path / "o")]  # fmt: skip
    with pytest.raises(report.MissingModelError, match="warmup/model"):
        report.main(args)
    with pytest.raises(report.MissingModelError, match="retriever"):
        report.main([*args, "--skip-missing"])
    shutil.copytree(artifacts / "retriever", partial / "retriever")
    result = report.main([*args, "--skip-missing"])
    marked = [r for r in result["rows"] if r.get("status") == "not built"]
    assert {r["system"] for r in marked} == {"warmup", "cgrpo"}


def test_the_report_says_how_many_questions_each_row_scored_and_skipped(
    short_clips_dataset, artifacts, tmp_path
):
    # A test split of two videos, one of them corrupt.
    root = shutil.copytree(short_clips_dataset, tmp_path / "data")
    shutil.copy(root / "train.jsonl", root / "test.jsonl")
    (root / "videos/video_00000.mp4").write_bytes(b"not a video")
    args = ["--artifacts", str(artifacts), "--data-root", str(root), "--max-frames", "16",
            "--budgets", "1", "--compressors", "UniformFrames", "--max-new-tokens", "2",
            "--batch-size", "3", "--output", str(tmp_path / "out")]  # fmt: skip
    with pytest.raises(Exception, match="video_00000.mp4"):
        report.main(args)  # bad input stops the report unless told to skip it
    result = report.main([*args, "--on-bad-sample", "skip"])
    built = [r for r in result["rows"] if r.get("accuracy") is not None]
    assert built and all((r["questions"], r["skipped"]) == (4, 4) for r in built)
    table = (tmp_path / "out/report.md").read_text()
    assert "| questions |" in table and table.count("| 4 (4 skipped) |") == len(built)


def test_a_setting_that_scored_no_question_is_an_error():
    setting = Setting("teacher", "m", "Identity", False, None)
    with pytest.raises(ValueError, match="scored no question: all 4 test questions were skipped"):
        report.build_rows({setting: []}, [], {False: 4})


def test_sweep_answers_do_not_depend_on_the_batch_size(short_clips_dataset, artifacts):
    settings = [
        Setting("teacher", str(artifacts / "teacher/model"), name, vmr, budget)
        for name, budget in (("Identity", None), ("MemoryAwareMerge", 1), ("VidCom2", 1))
        for vmr in (False, True)
    ]
    retriever = str(artifacts / "retriever")
    datasets = {
        False: _data(short_clips_dataset).dataset("test"),
        True: _data(short_clips_dataset, retriever_dir=retriever).dataset("test"),
    }
    one, four = (
        evaluate_settings(
            settings, datasets, report.build_compressor, batch_size=size, max_new_tokens=8
        )
        for size in (1, 4)
    )
    for setting in settings:
        assert [a.completion for a in one[setting]] == [a.completion for a in four[setting]]
