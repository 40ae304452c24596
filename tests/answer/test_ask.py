"""``marc ask VIDEO "QUESTION"`` through its console-script entry function (marc/ask.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from marc.ask import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ask(tiny_vlm_dir, tiny_retriever_dir, tmp_path):
    def run(video, question, *extra, model=tiny_vlm_dir):
        argv = ["ask", str(video), question, "--model", str(model)]
        argv += ["--retriever", str(tiny_retriever_dir), "--clip-memory", str(tmp_path / "cm")]
        return main([*argv, "--max-new-tokens", "4", *extra])

    return run


def test_pyproject_declares_the_console_script():
    text = (REPO / "pyproject.toml").read_text()
    section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    assert 'marc = "marc.ask:main"' in section


def test_marc_ask_answers_on_a_generated_video(ask, videos, capsys):
    assert ask(videos[0], "What colour is the circle?", "--options", "A. red", "B. blue") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("answer: ") and out[1].startswith("reasoning: ")


def test_json_prints_the_predict_line(ask, videos, capsys):
    assert ask(videos[0], "What colour is the circle?", "--json") == 0
    line = json.loads(capsys.readouterr().out)
    assert line["status"] == "ok" and line["problem_id"] == "q0"
    assert {"completion", "answer", "clips", "visual_tokens", "seconds"} <= set(line)
    clip = line["clips"][0]
    assert clip["end_s"] > clip["start_s"] >= 0 and "score" in clip


@pytest.mark.parametrize(
    "case",
    [
        "missing-video",
        "undecodable-video",
        "empty-question",
        "bad-options",
        "model-without-weights",
    ],
)
def test_bad_input_prints_one_line_naming_it_and_exits_2(
    case, ask, videos, tiny_vlm_dir, tmp_path, capsys
):
    video, question, extra, model = videos[0], "What colour?", [], tiny_vlm_dir
    named = str(video)
    if case == "missing-video":
        video = named = tmp_path / "nowhere.mp4"
    elif case == "undecodable-video":
        video = named = tmp_path / "noise.mp4"
        video.write_bytes(b"not a video at all" * 50)
    elif case == "empty-question":
        question, named = "  ", "question is empty"
    elif case == "bad-options":
        extra, named = ["--options", "A. red", "blue"], "options[1]"
    else:
        model = tmp_path / "model"
        shutil.copytree(tiny_vlm_dir, model)
        for weights in model.glob("*.safetensors"):
            weights.unlink()
        named = str(model)
    assert ask(video, question, *extra, model=model) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("marc ask:")]
    assert len(err) == 1 and str(named) in err[0], err


def test_a_corrupt_clip_memory_exits_2_naming_it(ask, videos, tmp_path, capsys):
    assert ask(videos[0], "What colour?") == 0
    (metadata,) = (tmp_path / "cm").glob("*/metadata.json")
    metadata.write_text("[]")
    assert ask(videos[0], "What colour?") == 2
    err = capsys.readouterr().err
    assert str(metadata.parent) in err and "rebuild" in err
