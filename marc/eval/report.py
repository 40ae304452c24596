"""The comparison table of ``make demo``: every model and baseline at the same budget.

Rows: the teacher with all frames; the warmup and C-GRPO students under MARC's
memory-aware compression; and training-free compressors (MemoryAwareMerge, UniformFrames,
TemporalMeanPool, ToMe) applied to the teacher at the same one-frame budget. Every
compressed row runs with and without the Visual Memory Retriever (VMR). Accuracy is overall
and per question kind on the test split, with the visual tokens the language model saw.

    python -m marc.eval.report --artifacts artifacts --data-root data/synthetic
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import torch

from marc.compression import (
    Identity,
    MemoryAwareMerge,
    TemporalMeanPool,
    TokenCompressor,
    ToMe,
    UniformFrames,
)
from marc.data.datamodule import VideoQADataModule
from marc.modules.evaluation import VideoQAEvaluation
from marc.vocabulary import QUESTION_KINDS

log = logging.getLogger(__name__)


@dataclass
class ReportRow:
    """One evaluated setting and its measured figures."""

    name: str
    model: str
    compressor: str
    vmr: bool
    accuracy: float = float("nan")
    per_kind: dict[str, float] = field(default_factory=dict)
    visual_tokens: float = float("nan")
    kept_fraction: float = float("nan")


def settings(artifacts: Path) -> list[tuple[str, Path, TokenCompressor, bool]]:
    """(row name, model folder, compressor, use VMR) for every row whose model exists."""
    teacher = artifacts / "teacher/model"
    warmup = artifacts / "warmup/model"
    cgrpo = artifacts / "cgrpo/model"
    rows = [("teacher, all frames", teacher, Identity(), False)]
    for vmr in (False, True):
        rows += [
            ("C-GRPO student", cgrpo, MemoryAwareMerge(), vmr),
            ("warmup student", warmup, MemoryAwareMerge(), vmr),
            ("teacher + MemoryAwareMerge", teacher, MemoryAwareMerge(), vmr),
            ("teacher + UniformFrames", teacher, UniformFrames(), vmr),
            ("teacher + TemporalMeanPool", teacher, TemporalMeanPool(), vmr),
            ("teacher + ToMe", teacher, ToMe(), vmr),
        ]
    return [row for row in rows if row[1].exists()]


def evaluate(
    model_dir: Path,
    compressor: TokenCompressor,
    datamodule: VideoQADataModule,
    use_retrieval: bool,
    budget_frames: int,
    max_new_tokens: int,
) -> dict[str, float]:
    """Test one setting; returns the logged test metrics."""
    module = VideoQAEvaluation(
        compressor=compressor,
        budget_frames=budget_frames,
        use_retrieval=use_retrieval,
        init_from=str(model_dir),
        max_new_tokens=max_new_tokens,
    )
    trainer = L.Trainer(
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in metrics.items()}


def build_report(
    artifacts: Path,
    data_root: Path,
    frame_size: int = 56,
    max_frames: int = 64,
    budget_frames: int = 1,
    max_new_tokens: int = 40,
    limit: int | None = None,
) -> list[ReportRow]:
    """Evaluate every available row on the test split."""
    data_args = dict(
        data_root=str(data_root),
        frame_size=frame_size,
        max_frames=max_frames,
        eval_batch_size=32,
        cache_frames=True,
        limit_eval=limit,
    )
    plain = VideoQADataModule(**data_args)
    with_vmr = None
    retriever_dir = artifacts / "retriever"
    results = []
    for name, model_dir, compressor, vmr in settings(artifacts):
        if vmr and with_vmr is None:
            if not retriever_dir.exists():
                log.warning("no retriever at %s: rows with VMR are left out", retriever_dir)
                continue
            with_vmr = VideoQADataModule(**data_args, retriever_dir=str(retriever_dir))
        metrics = evaluate(
            model_dir,
            compressor,
            with_vmr if vmr else plain,
            vmr,
            budget_frames,
            max_new_tokens,
        )
        results.append(
            ReportRow(
                name=name,
                model=str(model_dir),
                compressor=type(compressor).__name__,
                vmr=vmr,
                accuracy=metrics.get("test/acc", float("nan")),
                per_kind={
                    k: metrics[f"test/acc_{k}"]
                    for k in QUESTION_KINDS
                    if f"test/acc_{k}" in metrics
                },
                visual_tokens=metrics.get("test/visual_tokens", float("nan")),
                kept_fraction=metrics.get("test/kept_fraction", float("nan")),
            )
        )
    return results


def markdown_table(rows: list[ReportRow]) -> str:
    """The rows as a markdown table (accuracy in %, per kind, tokens, kept fraction)."""
    head = (
        "| setting | VMR | accuracy | " + " | ".join(QUESTION_KINDS) + " | visual tokens | kept |"
    )
    lines = [head, "|" + "---|" * (5 + len(QUESTION_KINDS))]
    for row in rows:
        kinds = " | ".join(f"{100 * row.per_kind.get(k, float('nan')):.1f}" for k in QUESTION_KINDS)
        lines.append(
            f"| {row.name} | {'yes' if row.vmr else 'no'} | {100 * row.accuracy:.1f} | {kinds} | "
            f"{row.visual_tokens:.1f} | {100 * row.kept_fraction:.2f} % |"
        )
    return "\n".join(lines)


def write_report(rows: list[ReportRow], directory: Path) -> Path:
    """Write ``report.md`` and ``report.json`` atomically; returns the markdown path."""
    directory.mkdir(parents=True, exist_ok=True)
    outputs = {
        "report.md": markdown_table(rows) + "\n",
        "report.json": json.dumps([asdict(r) for r in rows], indent=2) + "\n",
    }
    for name, text in outputs.items():
        tmp = directory / f".{name}.tmp{os.getpid()}"
        tmp.write_text(text)
        os.replace(tmp, directory / name)
    return directory / "report.md"


def main(argv: list[str] | None = None) -> list[ReportRow]:
    """Command-line entry: evaluate, print the table, write it under ``artifacts/report``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--data-root", default="data/synthetic")
    parser.add_argument("--frame-size", type=int, default=56)
    parser.add_argument("--max-frames", type=int, default=64)
    parser.add_argument("--budget-frames", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="first N test questions only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_grad_enabled(False)
    rows = build_report(
        Path(args.artifacts),
        Path(args.data_root),
        args.frame_size,
        args.max_frames,
        args.budget_frames,
        limit=args.limit,
    )
    if not rows:
        raise SystemExit(f"nothing to evaluate under {args.artifacts}: run `make demo` first")
    path = write_report(rows, Path(args.artifacts) / "report")
    print(markdown_table(rows))
    print(f"\nwritten to {path}")
    return rows


if __name__ == "__main__":
    main()
