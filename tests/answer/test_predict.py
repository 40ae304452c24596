"""``python main.py predict --config configs/predict.yaml``: predictions.jsonl, bad rows, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from main import main
from marc.answer.answerer import Answerer
from marc.answer.writer import PredictionWriter

REPO = Path(__file__).resolve().parents[2]
PHASES = {"decode", "segment", "embed", "search", "encode", "compress", "prefill", "generate"}


@pytest.fixture
def predict(tiny_vlm_dir, tiny_retriever_dir, tmp_path):
    def run(*extra):
        return main(
            [
                "predict",
                "--config", str(REPO / "configs/predict.yaml"),
                "--trainer.accelerator=cpu",
                "--trainer.callbacks=[]",
                f"--model.model_dir={tiny_vlm_dir}",
                f"--model.retriever_dir={tiny_retriever_dir}",
                f"--model.clip_memory_dir={tmp_path / 'cm'}",
                f"--model.output={tmp_path / 'predictions.jsonl'}",
                "--model.max_new_tokens=4",
                *extra,
            ]
        )  # fmt: skip

    return run


def lines(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]


@pytest.fixture
def questions_file(videos, tmp_path):
    rows = [
        {"problem_id": "a", "problem": "What colour is the circle?", "path": videos[0].name,
         "options": ["A. red", "B. blue"], "solution": "<answer>A</answer>"},
        {"problem_id": "empty", "problem": "", "path": videos[0].name},
        {"problem_id": "missing", "problem": "Where?", "path": "nowhere.mp4"},
        {"problem_id": "options", "problem": "Which?", "path": videos[1].name,
         "options": ["red", "B. blue"]},
        {"problem_id": "b", "problem": "What shape is the red object?", "path": videos[1].name},
    ]  # fmt: skip
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + "not json\n")
    return path


def test_predict_writes_one_line_per_question_and_the_accuracy(
    predict, questions_file, videos, tmp_path, capsys
):
    predict(f"--data.predict_file={questions_file}", f"--data.data_root={videos[0].parent}")
    written = {line["problem_id"]: line for line in lines(tmp_path)}
    assert len(written) == 6
    ok = written["a"]
    assert ok["status"] == "ok" and set(ok["seconds"]) == PHASES
    assert {"completion", "answer", "clips", "visual_tokens", "correct"} <= set(ok)
    assert ok["clips"][0]["end_s"] > ok["clips"][0]["start_s"]
    assert written["b"]["status"] == "ok" and "correct" not in written["b"]
    assert "accuracy" in capsys.readouterr().out


def test_bad_rows_are_marked_failed_with_the_reason(predict, questions_file, videos, tmp_path):
    predict(f"--data.predict_file={questions_file}", f"--data.data_root={videos[0].parent}")
    written = {line["problem_id"]: line for line in lines(tmp_path)}
    failed = {pid: line["error"] for pid, line in written.items() if line["status"] == "failed"}
    assert set(failed) == {"empty", "missing", "options", f"{questions_file}:6"}
    assert "question is empty" in failed["empty"]
    assert "nowhere.mp4" in failed["missing"]
    assert "options[0]" in failed["options"]
    assert "not JSON" in failed[f"{questions_file}:6"]


def test_predict_takes_videos_and_questions_on_the_command_line(predict, videos, tmp_path):
    predict(f"--data.videos=[{videos[0]}]", '--data.questions=["What colour?", "How many?"]')
    assert [line["problem_id"] for line in lines(tmp_path)] == ["q0", "q1"]
    assert lines(tmp_path)[1]["cached"] is True  # the same video: asked about once


def test_a_crash_halfway_keeps_the_lines_written_and_resume_skips_them(
    predict, questions_file, videos, tmp_path, monkeypatch
):
    answer = Answerer.answer
    calls = []

    def crash_on_second(self, question):
        calls.append(question.problem_id)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return answer(self, question)

    monkeypatch.setattr(Answerer, "answer", crash_on_second)
    with pytest.raises(RuntimeError, match="killed"):
        predict(f"--data.predict_file={questions_file}", f"--data.data_root={videos[0].parent}")
    before = lines(tmp_path)
    assert [line["problem_id"] for line in before] == ["a", "empty", "missing", "options"]
    calls.clear()
    predict(
        f"--data.predict_file={questions_file}", f"--data.data_root={videos[0].parent}", "--resume"
    )
    after = lines(tmp_path)
    assert after[:4] == before and calls == ["b"]
    assert len(after) == 6


def test_a_line_cut_off_mid_write_is_dropped_on_resume(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"problem_id": "a", "status": "ok"}\n{"problem_id": "b", "sta')
    writer = PredictionWriter(path, resume=True)
    assert writer.done == {"a"}
    writer.write({"problem_id": "b", "status": "ok"})
    writer.close()
    assert [json.loads(line)["problem_id"] for line in path.read_text().splitlines()] == ["a", "b"]
