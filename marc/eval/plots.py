"""The report's figures: accuracy against visual tokens, and accuracy per question kind."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI machines
import matplotlib.pyplot as plt  # noqa: E402


def _label(row: dict) -> str:
    name = row["system"] if row["system"] != "teacher" else f"teacher + {row['compressor']}"
    return f"{name} ({'VMR' if row['vmr'] else 'full video'})"


def accuracy_against_tokens(rows: list[dict], path: Path):
    """One line per system and VMR setting: accuracy against visual tokens (log axis)."""
    series = defaultdict(list)
    for row in rows:
        if row.get("accuracy") is None or row["system"] == "blind" or row["budget_frames"] is None:
            continue
        series[_label(row)].append((row["visual_tokens"], 100 * row["accuracy"]))
    fig, ax = plt.subplots(figsize=(9, 6))
    for label, points in sorted(series.items()):
        points.sort()
        style = "-" if "VMR" in label else "--"
        width = 2.5 if label.startswith(("cgrpo", "warmup")) else 1.0
        ax.plot(*zip(*points), style, marker="o", linewidth=width, markersize=3, label=label)
    for row in rows:
        reference = row["system"] == "blind" or (
            row["system"] == "teacher" and row["budget_frames"] is None
        )
        if reference and row.get("accuracy") is not None:
            text = (
                "blind"
                if row["system"] == "blind"
                else f"teacher, all frames ({_label(row)[-11:-1]})"
            )
            ax.axhline(100 * row["accuracy"], color="grey", linewidth=0.8, linestyle=":")
            ax.annotate(text, (1, 100 * row["accuracy"]), fontsize=7, color="grey")
    ax.axhline(25, color="black", linewidth=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("visual tokens per question (log)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy against visual tokens (chance 25 %)")
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    return _save(fig, path)


def accuracy_per_kind(rows: list[dict], kinds: list[str], path: Path, budget_frames: int = 1):
    """Grouped bars: accuracy per question kind of every system at one budget."""
    chosen = [
        r
        for r in rows
        if r.get("accuracy") is not None
        and (
            r["budget_frames"] == budget_frames
            or r["system"] == "blind"
            or r["budget_frames"] is None
        )
    ]
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(chosen) * len(kinds) / 2), 5))
    width = 0.8 / max(len(chosen), 1)
    for i, row in enumerate(chosen):
        values = [100 * row["per_kind"].get(kind, float("nan")) for kind in kinds]
        positions = [k + i * width for k in range(len(kinds))]
        label = _label(row) + ("" if row["budget_frames"] else ", all frames")
        ax.bar(positions, values, width, label=label)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(kinds))], kinds)
    ax.axhline(25, color="black", linewidth=0.5)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Accuracy per question kind at a {budget_frames}-frame budget")
    ax.legend(fontsize=5, ncol=3, loc="upper left", bbox_to_anchor=(0, -0.08))
    return _save(fig, path)


def _save(fig, path: Path):
    """Write the figure atomically; returns the figure (for TensorBoard) after saving."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)
    return fig
