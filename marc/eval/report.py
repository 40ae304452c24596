"""The comparison report of ``make demo``: every system, compressor and budget on the test split.

Systems: the teacher on all frames; the blind floor (the teacher given the question
without its video); the warmup and C-GRPO students under MARC's ``MemoryAwareMerge``; and
every training-free compressor of ``marc.compression`` applied to the teacher. Each runs
with and without the Visual Memory Retriever (VMR) at budgets of 1, 2, 4 and 8 frames (and
all frames for the teacher). Reported per row: accuracy overall and per question kind, the
answer-format rate, visual tokens and kept fraction (of the full video), the questions it
scored and skipped (a missing or corrupt video, with ``--on-bad-sample skip``), and a paired
bootstrap 95 % interval of the difference from the teacher on all frames; and C-GRPO minus
warmup at every budget. Written as ``report.md``, ``report.json`` (``{"rows", "plots",
"models", "comparisons", ...}``), per-question ``answers.jsonl`` and two PNG plots, also
logged to TensorBoard under ``artifacts/logs/report``.

    python -m marc.eval.report --artifacts artifacts --data-root data/synthetic
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

import marc.compression as compression
from marc.assets import INFO as ASSET_INFO
from marc.data.datamodule import VideoQADataModule
from marc.eval import plots
from marc.eval.statistics import paired_difference, summarise
from marc.eval.sweep import Setting, evaluate_settings, model_folder
from marc.vocabulary import QUESTION_KINDS

log = logging.getLogger(__name__)

STUDENTS = ("warmup", "cgrpo")
STUDENT_COMPRESSOR = "MemoryAwareMerge"
BUDGETS = (1, 2, 4, 8)
SYSTEM_NAMES = {
    "teacher": "teacher",
    "blind": "blind (no video)",
    "warmup": "warmup student",
    "cgrpo": "C-GRPO student",
}


class MissingModelError(FileNotFoundError):
    """A model the report needs has not been built."""


def available_compressors() -> tuple[str, ...]:
    """The training-free compressors compared with the students (``marc.compression``)."""
    return compression.TRAINING_FREE


build_compressor = compression.build_compressor


def report_settings(
    artifacts: Path,
    budgets: tuple[int, ...] = BUDGETS,
    compressors: tuple[str, ...] | None = None,
    systems: tuple[str, ...] = ("teacher", "blind", *STUDENTS),
) -> list[Setting]:
    """Every row of the report, in table order."""
    compressors = available_compressors() if compressors is None else compressors
    rows = []
    teacher = str(model_folder(artifacts, "teacher"))
    if "teacher" in systems:
        rows += [Setting("teacher", teacher, "Identity", vmr, None) for vmr in (False, True)]
    if "blind" in systems:
        rows.append(Setting("blind", teacher, None, False, None))
    for vmr in (False, True):
        for budget in budgets:
            for system in STUDENTS:
                if system in systems:
                    folder = str(model_folder(artifacts, system))
                    rows.append(Setting(system, folder, STUDENT_COMPRESSOR, vmr, budget))
            if "teacher" in systems:
                rows += [Setting("teacher", teacher, name, vmr, budget) for name in compressors]
    return rows


def check_models(
    settings: list[Setting], skip_missing: bool
) -> tuple[list[Setting], list[Setting]]:
    """Settings whose model exists, and those left out; without ``skip_missing`` a missing
    model is an error naming its folder."""
    present, missing = [], []
    for setting in settings:
        (present if Path(setting.model_dir).is_dir() else missing).append(setting)
    if missing and not skip_missing:
        folders = sorted({s.model_dir for s in missing})
        raise MissingModelError(
            f"the report needs models that are not built: {', '.join(folders)} "
            "(build them with `make demo`, or pass --skip-missing to mark those rows 'not built')"
        )
    return present, missing


def provenance(settings: list[Setting]) -> dict[str, dict]:
    """Where each system's weights came from: the stage that exported them, and the shipped
    asset they were installed from (its ``ASSET.json``), if any."""
    models = {}
    for setting in settings:
        folder = Path(setting.model_dir)
        file = folder / "marc_vlm.json"
        info = json.loads(file.read_text()).get("provenance", {}) if file.is_file() else {}
        if (folder / ASSET_INFO).is_file():
            info["installed_from_asset"] = json.loads((folder / ASSET_INFO).read_text())
        models.setdefault(setting.system, {"folder": setting.model_dir, **info})
    return models


def build_rows(
    results: dict, missing: list[Setting], totals: dict[bool, int] | None = None
) -> list[dict]:
    """One row per setting: its summary and its difference from the teacher on all frames.

    ``totals`` (questions in the test split with and without VMR) adds each row's
    ``skipped``: the questions it could not score (their video missing or corrupt, with
    ``--on-bad-sample skip``). A setting that scored no question is an error.
    """
    for setting, answers in results.items():
        if not answers:
            total = (totals or {}).get(setting.vmr, "its")
            raise ValueError(
                f"{setting.system} ({setting.compressor}, VMR {setting.vmr}) scored no question: "
                f"all {total} test questions were skipped as bad input"
            )
    reference = next(
        (
            r
            for s, r in results.items()
            if s.system == "teacher" and s.budget_frames is None and not s.vmr
        ),
        None,
    )
    rows = []
    for setting, answers in results.items():
        row = {**_keys(setting), **summarise(answers, QUESTION_KINDS)}
        if totals is not None:
            row["skipped"] = totals[setting.vmr] - row["questions"]
        if reference is not None:
            row["ci95_vs_teacher"] = paired_difference(answers, reference)["ci95"]
            row["difference_vs_teacher"] = (
                row["accuracy"] - summarise(reference, QUESTION_KINDS)["accuracy"]
            )
        rows.append(row)
    rows += [{**_keys(s), "accuracy": None, "status": "not built"} for s in missing]
    return rows


def _keys(setting: Setting) -> dict:
    return {
        "system": setting.system,
        "compressor": setting.compressor or "none",
        "vmr": setting.vmr,
        "budget_frames": setting.budget_frames,
        "model": setting.model_dir,
    }


def comparisons(results: dict) -> list[dict]:
    """C-GRPO minus warmup (paired) at every budget and VMR setting where both exist."""
    found = {
        (s.system, s.vmr, s.budget_frames): r for s, r in results.items() if s.system in STUDENTS
    }
    out = []
    for (system, vmr, budget), answers in sorted(
        found.items(), key=lambda x: (x[0][1], x[0][2] or 0)
    ):
        if system == "cgrpo" and ("warmup", vmr, budget) in found:
            out.append(
                {
                    "comparison": "cgrpo - warmup",
                    "vmr": vmr,
                    "budget_frames": budget,
                    **paired_difference(answers, found[("warmup", vmr, budget)]),
                }
            )
    return out


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _scored(row: dict) -> str:
    """Questions a row scored, and how many it skipped when any."""
    skipped = row.get("skipped")
    return f"{row['questions']}" + (f" ({skipped} skipped)" if skipped else "")


def markdown(rows: list[dict], compared: list[dict]) -> str:
    """The rows as markdown tables, one per budget, then C-GRPO minus warmup."""
    head = (
        "| system | compressor | VMR | accuracy | vs teacher [95 % CI] | "
        + " | ".join(QUESTION_KINDS)
        + " | format | visual tokens | kept | questions |"
    )
    rule = "|" + "---|" * (9 + len(QUESTION_KINDS))
    sections = []
    budgets = sorted({r["budget_frames"] for r in rows}, key=lambda b: (b is not None, b or 0))
    for budget in budgets:
        title = (
            "All frames, and the blind floor"
            if budget is None
            else f"Budget: {budget} frame{'s' * (budget > 1)}"
        )
        lines = [f"### {title}", "", head, rule]
        for row in (r for r in rows if r["budget_frames"] == budget):
            name = SYSTEM_NAMES.get(row["system"], row["system"])
            vmr = "yes" if row["vmr"] else "no"
            if row.get("accuracy") is None:
                lines.append(
                    f"| {name} | {row['compressor']} | {vmr} | not built |"
                    + " |" * (5 + len(QUESTION_KINDS))
                )
                continue
            ci = row.get("ci95_vs_teacher")
            versus = (
                "reference"
                if row["system"] == "teacher" and row["budget_frames"] is None and not row["vmr"]
                else f"{100 * row['difference_vs_teacher']:+.1f} [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"
                if ci
                else "n/a"
            )
            kinds = " | ".join(_pct(row["per_kind"].get(k)) for k in QUESTION_KINDS)
            uncompressed = (
                " (all)" if row["uncompressed_fraction"] == 1.0 and row["budget_frames"] else ""
            )
            lines.append(
                f"| {name} | {row['compressor']} | {vmr} | {_pct(row['accuracy'])} | {versus} | "
                f"{kinds} | {_pct(row['format_rate'])} | {row['visual_tokens']:.1f}{uncompressed} | "
                f"{100 * row['kept_fraction']:.2f} % | {_scored(row)} |"
            )
        sections.append("\n".join(lines))
    if compared:
        lines = [
            "### C-GRPO minus warmup (paired, same questions)",
            "",
            "| VMR | budget | difference [95 % CI] |",
            "|---|---|---|",
        ]
        for c in compared:
            lines.append(
                f"| {'yes' if c['vmr'] else 'no'} | {c['budget_frames']} | "
                f"{100 * c['difference']:+.1f} [{100 * c['ci95'][0]:+.1f}, {100 * c['ci95'][1]:+.1f}] |"
            )
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(
    rows: list[dict],
    compared: list[dict],
    models: dict,
    results: dict,
    directory: Path,
    log_dir: Path | None,
    extra: dict,
) -> dict[str, Path]:
    """Write markdown, JSON, per-question answers and plots (and TensorBoard); returns paths."""
    directory.mkdir(parents=True, exist_ok=True)
    figures = {
        "accuracy_vs_tokens": plots.accuracy_against_tokens(
            rows, directory / "accuracy_vs_tokens.png"
        ),
        "accuracy_per_kind": plots.accuracy_per_kind(
            rows, list(QUESTION_KINDS), directory / "accuracy_per_kind.png"
        ),
    }
    plot_paths = [str(directory / f"{name}.png") for name in figures]
    answers = [
        json.dumps({**_keys(setting), **asdict(answer)})
        for setting, per_question in results.items()
        for answer in per_question
    ]
    write_atomic(directory / "answers.jsonl", "\n".join(answers) + "\n")
    document = {
        "rows": rows,
        "plots": plot_paths,
        "models": models,
        "comparisons": compared,
        **extra,
    }
    write_atomic(directory / "report.json", json.dumps(document, indent=2) + "\n")
    write_atomic(directory / "report.md", markdown(rows, compared) + "\n")
    if log_dir is not None:
        _log_to_tensorboard(figures, rows, log_dir)
    for figure in figures.values():
        plots.plt.close(figure)
    return {
        "markdown": directory / "report.md",
        "json": directory / "report.json",
        "plots": plot_paths,
    }


def _log_to_tensorboard(figures: dict, rows: list[dict], log_dir: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir))
    for name, figure in figures.items():
        writer.add_figure(f"report/{name}", figure, close=False)
    for row in rows:
        if row.get("accuracy") is not None:
            tag = f"{row['system']}/{row['compressor']}/{'vmr' if row['vmr'] else 'full'}"
            writer.add_scalar(f"report_accuracy/{tag}", row["accuracy"], row["budget_frames"] or 0)
    writer.close()


# No gradients, without leaving them off for a caller (tests call main in-process).
@torch.no_grad()
def main(argv: list[str] | None = None) -> dict:
    """Command-line entry: evaluate, print the tables and the plot paths, write the files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--data-root", default="data/synthetic")
    parser.add_argument("--frame-size", type=int, default=56)
    parser.add_argument("--max-frames", type=int, default=64)
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument(
        "--compressors", nargs="+", default=None, help="default: all training-free ones"
    )
    # Greedy answers do not depend on the batch (tests/eval: sweep at two batch sizes);
    # large batches decode the tiny model several times faster.
    parser.add_argument("--batch-size", type=int, default=160)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--limit", type=int, default=None, help="first N test questions only")
    parser.add_argument(
        "--skip-missing", action="store_true", help="mark rows of unbuilt models 'not built'"
    )
    parser.add_argument(
        "--on-bad-sample",
        choices=("raise", "skip"),
        default="raise",
        help="a missing or corrupt test video: stop (default) or skip and count its questions",
    )
    parser.add_argument("--output", default=None, help="default: ARTIFACTS/report")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    artifacts = Path(args.artifacts)
    settings, missing = check_models(
        report_settings(
            artifacts, tuple(args.budgets), tuple(args.compressors) if args.compressors else None
        ),
        args.skip_missing,
    )
    if not settings:
        raise SystemExit(f"nothing to evaluate under {artifacts}: run `make demo` first")
    data_args = dict(
        data_root=args.data_root,
        frame_size=args.frame_size,
        max_frames=args.max_frames,
        limit_eval=args.limit,
        on_bad_sample=args.on_bad_sample,
    )
    data = VideoQADataModule(**data_args)
    datasets = {False: data.dataset("test")}
    if any(s.vmr for s in settings):
        retriever = artifacts / "retriever"
        if not retriever.is_dir():
            raise MissingModelError(
                f"rows with VMR need the retriever {retriever} (build it with `make demo`)"
            )
        datasets[True] = VideoQADataModule(**data_args, retriever_dir=str(retriever)).dataset(
            "test"
        )
    start = time.perf_counter()
    results = evaluate_settings(
        settings,
        datasets,
        build_compressor,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        progress=lambda text: print(f"\r{text}   ", end="", file=sys.stderr, flush=True),
    )
    print(file=sys.stderr)
    totals = {vmr: len(dataset) for vmr, dataset in datasets.items()}
    rows = build_rows(results, missing, totals)
    compared = comparisons(results)
    extra = {
        "test_questions": len(datasets[False]),
        "skipped_rows": data.skipped_rows,  # malformed annotation rows (--on-bad-sample skip)
        "seconds": round(time.perf_counter() - start, 1),
        "budgets": list(args.budgets),
    }
    paths = write_report(
        rows,
        compared,
        provenance(settings),
        results,
        Path(args.output or artifacts / "report"),
        artifacts / "logs" / "report",
        extra,
    )
    print(markdown(rows, compared))
    print(f"\nwritten to {paths['markdown']} and {paths['json']}")
    print("plots:", " ".join(paths["plots"]))
    return {"rows": rows, "comparisons": compared, "paths": paths}


if __name__ == "__main__":
    main()
