import json

import pytest

from marc.data.annotations import AnnotationError, load_annotations, read_annotations

VIDEO_R1_ROWS = [
    {
        "problem_id": 2,
        "problem": "What is the man doing?",
        "data_type": "video",
        "problem_type": "multiple choice",
        "options": ["A. running", "B. sitting", "C. cooking", "D. sleeping"],
        "process": "<think>He stands at a stove.</think>",
        "solution": "<answer>C</answer>",
        "path": "./LLaVA-Video-178K/clip.mp4",
        "data_source": "LLaVA-Video-178K",
    },
    {
        "problem_id": 3,
        "problem": "How many cars pass?",
        "data_type": "video",
        "problem_type": "numerical",
        "options": [],
        "solution": "<answer>4</answer>",
        "path": "clips/cars.mp4",
    },
    {
        "problem": "Describe the scene.",
        "data_type": "video",
        "problem_type": "free-form",
        "solution": "<answer>a kitchen at night</answer>",
        "path": "/abs/scene.mp4",
    },
]


def _write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_real_video_r1_rows_load_unchanged(tmp_path):
    for path in (tmp_path / "a.json", tmp_path / "a.jsonl"):
        if path.suffix == ".json":
            path.write_text(json.dumps(VIDEO_R1_ROWS, indent=2))
        else:
            _write_jsonl(path, VIDEO_R1_ROWS)
        rows = load_annotations(path)
        assert [r.answer for r in rows] == ["C", "4", "a kitchen at night"]
        assert rows[0].extra["process"] == "<think>He stands at a stove.</think>"
        assert rows[0].video_path == (tmp_path / "LLaVA-Video-178K/clip.mp4").resolve()
        assert str(rows[2].video_path) == "/abs/scene.mp4"
        assert rows[1].options == [] and rows[2].problem_id.startswith(f"{path.name}:")


def test_paths_resolve_against_a_given_root(tmp_path):
    path = _write_jsonl(tmp_path / "a.jsonl", VIDEO_R1_ROWS[1:2])
    rows = load_annotations(path, data_root=tmp_path / "media")
    assert rows[0].video_path == (tmp_path / "media/clips/cars.mp4").resolve()


def test_json_array_errors_carry_the_line_of_the_row(tmp_path):
    bad = [dict(VIDEO_R1_ROWS[0]), dict(VIDEO_R1_ROWS[1])]
    del bad[1]["solution"]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(bad, indent=2))
    text = path.read_text().splitlines()
    second_row_line = [i for i, t in enumerate(text, 1) if t.strip() == "{"][1]
    with pytest.raises(
        AnnotationError, match=rf"a.json:{second_row_line}: missing field 'solution'"
    ):
        load_annotations(path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"problem": ""}, "field 'problem' must be a non-empty string"),
        ({"solution": "C"}, "field 'solution' has no <answer>"),
        ({"options": "A. x"}, "field 'options' must be a list of strings"),
        ({"options": ["A. only"]}, "field 'options' needs at least two choices"),
        ({"path": None}, "missing field 'path'"),
        ({"data_type": "image"}, "field 'data_type'"),
    ],
)
def test_bad_field_is_named_with_file_and_line(tmp_path, change, message):
    row = {**VIDEO_R1_ROWS[0], **change}
    path = _write_jsonl(tmp_path / "a.jsonl", [VIDEO_R1_ROWS[1], row])
    with pytest.raises(AnnotationError, match=f"a.jsonl:2: {message}"):
        load_annotations(path)


def test_invalid_json_line_and_non_object_rows(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(VIDEO_R1_ROWS[0]) + "\n\n{not json\n")
    with pytest.raises(AnnotationError, match="a.jsonl:3: invalid JSON"):
        load_annotations(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(AnnotationError, match="a.jsonl:1: row must be a JSON object"):
        load_annotations(path)


def test_skip_counts_bad_rows(tmp_path):
    path = _write_jsonl(
        tmp_path / "a.jsonl", [VIDEO_R1_ROWS[0], {"problem": "x"}, VIDEO_R1_ROWS[1]]
    )
    rows, skipped = read_annotations(path, on_error="skip")
    assert len(rows) == 2 and len(skipped) == 1 and "a.jsonl:2" in skipped[0]


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="none.jsonl"):
        load_annotations(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(AnnotationError, match="empty.jsonl: no valid rows"):
        load_annotations(tmp_path / "empty.jsonl")
