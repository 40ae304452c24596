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
        "path": "scenes/../scene.mp4",
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
        assert rows[2].video_path == (tmp_path / "scene.mp4").resolve()
        assert rows[1].options == [] and rows[2].problem_id.startswith(f"{path.name}:")


def test_image_rows_load_with_their_picture_as_the_path(tmp_path):
    row = {
        "problem": "What does the sign say?",
        "data_type": "image",
        "problem_type": "OCR",
        "solution": "<answer>STOP</answer>",
        "path": "./Images/sign.png",
    }
    rows = load_annotations(_write_jsonl(tmp_path / "a.jsonl", [row, VIDEO_R1_ROWS[0]]))
    assert [r.data_type for r in rows] == ["image", "video"]
    assert rows[0].video_path == (tmp_path / "Images/sign.png").resolve()
    assert rows[0].video_id == "Images/sign.png" and rows[0].answer == "STOP"


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
        ({"options": ["running", "sitting"]}, "field 'options': 'running' is not of the form"),
        ({"options": ["A. x", "A. y"]}, "field 'options' has the letter A twice"),
        ({"problem_type": "essay"}, "field 'problem_type' is 'essay'; expected one of"),
        ({"problem_type": "Multiple Choice"}, "field 'problem_type' is 'Multiple Choice'"),
        ({"problem_type": "multiple_choice"}, "field 'problem_type' is 'multiple_choice'"),
        ({"solution": "<answer>E</answer>"}, r"field 'solution' answers 'E'.*\(A, B, C, D\)"),
        ({"solution": "<answer>flying</answer>"}, "field 'solution' answers 'flying'"),
        ({"path": "../outside/x.mp4"}, "field 'path' '../outside/x.mp4' resolves to .*outside"),
        ({"path": "/etc/passwd"}, "field 'path' '/etc/passwd' resolves to .*outside the data root"),
        ({"path": None}, "missing field 'path'"),
        ({"data_type": "audio"}, "field 'data_type' is 'audio'"),
    ],
    ids=[
        "empty-problem",
        "no-answer",
        "options-not-a-list",
        "one-option",
        "unlettered-options",
        "letter-twice",
        "essay",
        "Multiple-Choice",
        "multiple_choice",
        "solution-E-of-A-D",
        "solution-text-not-an-option",
        "path-leaves-root",
        "absolute-path-outside",
        "no-path",
        "unknown-data-type",
    ],  # fmt: skip
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


def test_a_solution_may_name_its_option_by_text(tmp_path):
    row = {**VIDEO_R1_ROWS[0], "solution": "<answer>cooking</answer>"}
    (loaded,) = load_annotations(_write_jsonl(tmp_path / "a.jsonl", [row]))
    assert loaded.answer == "cooking"


def test_known_problem_types_load(tmp_path):
    rows = [
        {**VIDEO_R1_ROWS[1], "problem_type": kind}
        for kind in ("numerical", "regression", "OCR", "free-form")
    ]
    loaded = load_annotations(_write_jsonl(tmp_path / "a.jsonl", [VIDEO_R1_ROWS[0], *rows]))
    assert [r.problem_type for r in loaded] == [
        "multiple choice",
        "numerical",
        "regression",
        "OCR",
        "free-form",
    ]


def test_paths_inside_the_root_load_whether_relative_absolute_or_symlinked(tmp_path):
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real/x.mp4").write_bytes(b"")
    (root / "link").symlink_to(root / "real")  # a symlink inside the root, to inside it
    rows = [
        {**VIDEO_R1_ROWS[1], "path": "real/x.mp4"},
        {**VIDEO_R1_ROWS[1], "path": str(root / "real/x.mp4")},
        {**VIDEO_R1_ROWS[1], "path": "link/x.mp4"},
    ]
    loaded = load_annotations(_write_jsonl(tmp_path / "a.jsonl", rows), data_root=root)
    assert {r.video_path for r in loaded} == {(root / "real/x.mp4").resolve()}
    assert {r.video_key for r in loaded} == {"real/x.mp4"}


def test_a_symlink_out_of_the_root_is_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"")
    (root / "escape.mp4").symlink_to(outside / "secret.mp4")
    path = _write_jsonl(tmp_path / "a.jsonl", [{**VIDEO_R1_ROWS[1], "path": "escape.mp4"}])
    with pytest.raises(AnnotationError, match=r"a.jsonl:1: field 'path' 'escape.mp4' resolves to"):
        load_annotations(path, data_root=root)


def test_every_kind_of_bad_row_is_skipped_and_counted(tmp_path):
    bad = [
        {**VIDEO_R1_ROWS[0], "problem_type": "essay"},
        {**VIDEO_R1_ROWS[0], "options": ["A. only"]},
        {**VIDEO_R1_ROWS[0], "solution": "<answer>E</answer>"},
        {**VIDEO_R1_ROWS[0], "path": "../outside/x.mp4"},
    ]
    path = tmp_path / "a.jsonl"
    lines = [json.dumps(VIDEO_R1_ROWS[0]), *map(json.dumps, bad), "{not json", "[1,"]
    path.write_text("\n".join(lines + [json.dumps(VIDEO_R1_ROWS[1])]) + "\n")
    rows, skipped = read_annotations(path, on_error="skip")
    assert [r.answer for r in rows] == ["C", "4"]
    assert [m.split(": ")[0] for m in skipped] == [f"{path}:{n}" for n in range(2, 8)]
    assert "invalid JSON" in skipped[4] and "invalid JSON" in skipped[5]


def test_a_syntax_error_in_a_json_array_stops_even_when_skipping(tmp_path):
    path = tmp_path / "a.json"
    text = json.dumps(VIDEO_R1_ROWS[:2], indent=2)
    path.write_text(text.replace('"problem_id": 3,', '"problem_id": 3,,'))
    bad_line = [i for i, t in enumerate(path.read_text().splitlines(), 1) if ",," in t][0]
    with pytest.raises(AnnotationError, match=rf"a.json:{bad_line}: invalid JSON.*even with"):
        read_annotations(path, on_error="skip")


def test_two_videos_of_one_file_name_have_two_ids(tmp_path):
    rows = [
        {**VIDEO_R1_ROWS[1], "path": "a/x.mp4"},
        {**VIDEO_R1_ROWS[1], "path": "b/x.mp4"},
        {**VIDEO_R1_ROWS[1], "path": "b/x.mp4", "video_id": "mine"},
    ]
    loaded = load_annotations(_write_jsonl(tmp_path / "a.jsonl", rows))
    assert [r.video_id for r in loaded] == ["a/x.mp4", "b/x.mp4", "mine"]


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(AnnotationError, match="a.jsonl: not UTF-8"):
        load_annotations(path)
