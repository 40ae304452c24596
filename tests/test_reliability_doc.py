"""docs/RELIABILITY.md: every row names at least one test, and every test it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs/RELIABILITY.md"
# `file.py::test_name`, `::test_name` (the file before it) or `[case]` (the test before it).
REFERENCE = re.compile(r"`(?:(?P<file>[\w/]+\.py))?(?:::(?P<test>\w+))?(?:\[(?P<case>[^\]`]+)\])?`")


def _rows() -> list[str]:
    return [line for line in DOC.read_text().splitlines() if re.match(r"\| \d+ \|", line)]


def _tests(file: Path) -> set[str]:
    tree = ast.parse(file.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_the_table_has_at_least_24_numbered_rows_in_order():
    numbers = [int(row.split("|")[1]) for row in _rows()]
    assert len(numbers) >= 24 and numbers == list(range(1, len(numbers) + 1))


def test_every_row_names_tests_that_exist():
    for row in _rows():
        cells = row.split("|")
        file = test = None
        named = 0
        for match in REFERENCE.finditer(cells[-2]):
            if match["file"]:
                file, test = REPO / "tests" / match["file"], None
            assert file is not None and file.is_file(), f"row {cells[1]}: no such file {file}"
            if match["test"]:
                test = match["test"]
                assert test in _tests(file), f"row {cells[1]}: {file.name} has no {test}"
                named += 1
            if match["case"]:
                assert test is not None, f"row {cells[1]}: a case without its test"
                assert match["case"] in file.read_text(), (
                    f"row {cells[1]}: {file.name}::{test} has no case {match['case']!r}"
                )
        assert named, f"row {cells[1]} names no test"


def test_the_readme_links_it():
    assert "docs/RELIABILITY.md" in (REPO / "README.md").read_text()
