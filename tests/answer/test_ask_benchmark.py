"""benchmarks/ask.py runs in its quick mode and prints the ratios it is for."""

from __future__ import annotations

import json

from benchmarks.ask import main


def test_the_quick_benchmark_prints_one_json_line_of_ratios(tmp_path, capsys):
    summary = main(
        ["--quick", "--events", "4", "--new-tokens", "2", "--model", str(tmp_path / "none"),
         "--teacher", str(tmp_path / "none"), "--retriever", str(tmp_path / "none")]
    )  # fmt: skip
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == summary and summary["benchmark"] == "ask"
    for ratio in ("first_over_next_question", "teacher_ten_over_marc_ten"):
        assert summary[ratio] > 0
    assert summary["phases_cached_s"]["segment"] == 0 and summary["phases_cached_s"]["embed"] == 0
