"""Ship the embedded default's teacher as an asset, or check a retrained one against it.

``make reproduce`` trains the teacher from scratch (``configs/teacher.yaml`` with
``configs/full/teacher.yaml``) and then checks it::

    python -m marc.eval.teacher_asset check --model artifacts/teacher/model

which measures its accuracy on the test split (all frames, no retriever, greedy) and fails
when it is further than ``--tolerance`` from the accuracy recorded in the shipped asset's
``ASSET.json`` (CPU kernels differ between machines, so the weights are not bit-identical;
the accuracy is what must agree). ``write`` makes the asset (``marc/assets/teacher``) of a
trained folder, with its measured accuracy, its configs and the commit it was trained at::

    python -m marc.eval.teacher_asset write --model artifacts/teacher/model
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from marc.assets import ASSETS, INFO, verify_asset, write_asset
from marc.compression import build_compressor
from marc.data.datamodule import VideoQADataModule
from marc.eval.statistics import summarise
from marc.eval.sweep import Setting, evaluate_settings
from marc.vocabulary import QUESTION_KINDS

DEFAULT_ASSET = ASSETS / "teacher"
TRAINING_CONFIGS = ["configs/teacher.yaml", "configs/full/teacher.yaml"]


def measure(model_dir: str | Path, data_root: str = "data/synthetic", batch_size: int = 160,
            limit: int | None = None) -> dict:  # fmt: skip
    """The teacher's test-split summary on all frames (``marc.eval.statistics.summarise``)."""
    setting = Setting("teacher", str(model_dir), "Identity", vmr=False, budget_frames=None)
    dataset = VideoQADataModule(data_root=data_root, limit_eval=limit).dataset("test")
    results = evaluate_settings(
        [setting], {False: dataset}, build_compressor, batch_size=batch_size
    )[setting]
    summary = summarise(results, QUESTION_KINDS)
    summary["test_questions"] = len(results)
    return summary


def _commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None


def write(model_dir: str | Path, asset: str | Path = DEFAULT_ASSET, **measure_args) -> dict:
    """Measure ``model_dir`` and make it the asset ``asset``; returns the asset's info."""
    summary = measure(model_dir, **measure_args)
    info = {
        "what": "the embedded default's teacher (TeacherFinetuning, tiny Qwen2.5-VL)",
        "trained_with": TRAINING_CONFIGS,
        "command": "python main.py fit " + " ".join(f"--config {c}" for c in TRAINING_CONFIGS),
        "commit": _commit(),
        "test_accuracy": summary["accuracy"],
        "test_per_kind": summary["per_kind"],
        "test_format_rate": summary["format_rate"],
        "test_questions": summary["test_questions"],
    }
    write_asset(model_dir, asset, info)
    return info


def check(model_dir: str | Path, asset: str | Path = DEFAULT_ASSET, tolerance: float = 0.05,
          **measure_args) -> dict:  # fmt: skip
    """Measure ``model_dir`` and compare with the asset's recorded accuracy.

    Raises ``SystemExit`` naming both figures when they differ by more than ``tolerance``.
    """
    verify_asset(asset)
    recorded = json.loads((Path(asset) / INFO).read_text())
    summary = measure(model_dir, **measure_args)
    result = {
        "accuracy": summary["accuracy"],
        "per_kind": summary["per_kind"],
        "asset_accuracy": recorded["test_accuracy"],
        "difference": summary["accuracy"] - recorded["test_accuracy"],
        "tolerance": tolerance,
    }
    print(json.dumps(result))
    if abs(result["difference"]) > tolerance:
        raise SystemExit(
            f"{model_dir}: test accuracy {summary['accuracy']:.3f} differs from the shipped "
            f"teacher's {recorded['test_accuracy']:.3f} ({Path(asset) / INFO}) by more than "
            f"{tolerance:.3f}"
        )
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("write", "check"))
    parser.add_argument("--model", default="artifacts/teacher/model")
    parser.add_argument("--asset", default=str(DEFAULT_ASSET))
    parser.add_argument("--data-root", default="data/synthetic")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--limit", type=int, default=None, help="first N test questions only")
    args = parser.parse_args(argv)
    measure_args = {"data_root": args.data_root, "limit": args.limit}
    if args.action == "write":
        info = write(args.model, args.asset, **measure_args)
        print(json.dumps(info, indent=2))
        return info
    return check(args.model, args.asset, args.tolerance, **measure_args)


if __name__ == "__main__":
    main()
