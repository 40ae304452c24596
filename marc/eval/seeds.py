"""The students trained with several seeds: each difference as a mean and interval over seeds.

For every seed the warmup and C-GRPO stages are trained again from the same teacher and
retriever (``python main.py fit --config configs/warmup.yaml`` then ``configs/cgrpo.yaml``
with ``--seed_everything=SEED --model.seed=SEED``), each seed in its own folder
``artifacts/seeds/SEED`` whose ``configs``, ``data``, retriever, teacher and teacher cache
are links to the shared ones, so the stage configs run unchanged. Each seed's students are
then evaluated at the one-frame budget with and without VMR, and the report gives, for
C-GRPO minus warmup, C-GRPO minus the teacher on all frames and C-GRPO minus the best
training-free compressor of the main report at the same budget, the mean over seeds and a
95 % interval from a bootstrap over seeds and (paired) questions.

    python -m marc.eval.seeds --seeds 0 1 2        # after make demo / the main report
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from marc.data.datamodule import VideoQADataModule
from marc.eval.report import STUDENT_COMPRESSOR, build_compressor, write_atomic
from marc.eval.statistics import summarise
from marc.eval.sweep import QuestionResult, Setting, evaluate_settings
from marc.vocabulary import QUESTION_KINDS

REPO = Path(__file__).resolve().parents[2]
SHARED = ("retriever", "teacher", "teacher_cache")


def seed_folder(artifacts: Path, seed: int) -> Path:
    """A working folder for one seed's runs, linked to the shared inputs."""
    folder = (artifacts / "seeds" / str(seed)).resolve()
    (folder / "artifacts").mkdir(parents=True, exist_ok=True)
    links = {folder / "configs": REPO / "configs", folder / "data": (REPO / "data").resolve()}
    links |= {folder / "artifacts" / name: (artifacts / name).resolve() for name in SHARED}
    for link, target in links.items():
        if not (link.is_symlink() or link.exists()):
            link.symlink_to(target, target_is_directory=True)
    return folder


def stage_arguments(stage: str, seed: int) -> list[str]:
    """The ``main.py fit`` arguments that train ``stage`` (warmup or cgrpo) with ``seed``."""
    return [
        "--config", f"configs/{stage}.yaml", f"--seed_everything={seed}", f"--model.seed={seed}"
    ]  # fmt: skip


def train_seed(artifacts: Path, seed: int) -> Path:
    """Train warmup then C-GRPO with ``seed``; returns the seed's artifacts folder."""
    folder = seed_folder(artifacts, seed)
    for stage in ("warmup", "cgrpo"):
        if (folder / "artifacts" / stage / "model").is_dir():
            continue
        command = [sys.executable, str(REPO / "main.py"), "fit", *stage_arguments(stage, seed)]
        print("$", " ".join(command), f"(in {folder})", flush=True)
        subprocess.run(command, cwd=folder, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return folder / "artifacts"


def bootstrap_over_seeds(
    per_seed: list[tuple[list[QuestionResult], list[QuestionResult]]],
    resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """Mean over seeds of accuracy(a) - accuracy(b), with a 95 % interval from resampling
    seeds and, within each, questions (paired: both settings answer the same questions)."""
    diffs = []
    for a, b in per_seed:
        by_id = {r.problem_id: r.correct for r in b}
        diffs.append(torch.tensor([float(r.correct) - float(by_id[r.problem_id]) for r in a]))
    generator = torch.Generator().manual_seed(seed)
    means = []
    for _ in range(resamples):
        chosen = torch.randint(len(diffs), (len(diffs),), generator=generator)
        sample = [
            diffs[i][torch.randint(len(diffs[i]), (len(diffs[i]),), generator=generator)].mean()
            for i in chosen
        ]
        means.append(torch.stack(sample).mean())
    low, high = torch.quantile(
        torch.stack(means).double(), torch.tensor([0.025, 0.975], dtype=torch.float64)
    )
    per_seed_means = [float(d.mean()) for d in diffs]
    return {
        "mean": sum(per_seed_means) / len(per_seed_means),
        "ci95": [float(low), float(high)],
        "per_seed": per_seed_means,
    }


def _reference_answers(report_dir: Path, vmr: bool, budget: int) -> dict[str, list[QuestionResult]]:
    """The teacher on all frames and the best training-free compressor at ``budget`` from
    the main report's answers (``answers.jsonl``)."""
    rows = json.loads((report_dir / "report.json").read_text())["rows"]
    free = [
        r for r in rows
        if r["system"] == "teacher" and r["budget_frames"] == budget and r["vmr"] == vmr and r.get("accuracy") is not None
    ]  # fmt: skip
    best = max(free, key=lambda r: r["accuracy"])
    wanted = {
        ("teacher", "Identity", False, None): "teacher",
        ("teacher", best["compressor"], vmr, budget): "best",
    }
    found = {"teacher": [], "best": []}
    for line in (report_dir / "answers.jsonl").read_text().splitlines():
        entry = json.loads(line)
        key = (entry["system"], entry["compressor"], entry["vmr"], entry["budget_frames"])
        if key in wanted:
            fields = {k: entry[k] for k in QuestionResult.__dataclass_fields__}
            found[wanted[key]].append(QuestionResult(**fields))
    found["best_name"] = best["compressor"]
    return found


# No gradients, without leaving them off for a caller (tests call main in-process).
@torch.no_grad()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--data-root", default="data/synthetic")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget-frames", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    artifacts = Path(args.artifacts)
    report_dir = artifacts / "report"
    if not (report_dir / "answers.jsonl").is_file():
        raise SystemExit(
            f"no main report under {report_dir}: run `python -m marc.eval.report` first"
        )
    data = dict(data_root=args.data_root, eval_batch_size=args.batch_size)
    datasets = {
        False: VideoQADataModule(**data).dataset("test"),
        True: VideoQADataModule(**data, retriever_dir=str(artifacts / "retriever")).dataset("test"),
    }
    results = {}
    for seed in args.seeds:
        seed_artifacts = train_seed(artifacts, seed)
        settings = [
            Setting(
                system,
                str(seed_artifacts / system / "model"),
                STUDENT_COMPRESSOR,
                vmr,
                args.budget_frames,
            )
            for system in ("warmup", "cgrpo")
            for vmr in (False, True)
        ]
        answered = evaluate_settings(
            settings,
            datasets,
            build_compressor,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
        )
        results[seed] = {(s.system, s.vmr): a for s, a in answered.items()}
    summary = {
        "seeds": args.seeds,
        "budget_frames": args.budget_frames,
        "comparisons": [],
        "students": [],
    }
    for vmr in (False, True):
        reference = _reference_answers(report_dir, vmr, args.budget_frames)
        for seed in args.seeds:
            for system in ("warmup", "cgrpo"):
                summary["students"].append(
                    {
                        "seed": seed,
                        "system": system,
                        "vmr": vmr,
                        **summarise(results[seed][(system, vmr)], QUESTION_KINDS),
                    }
                )
        pairs = {
            "cgrpo - warmup": [
                (results[s][("cgrpo", vmr)], results[s][("warmup", vmr)]) for s in args.seeds
            ],
            "cgrpo - teacher (all frames)": [
                (results[s][("cgrpo", vmr)], reference["teacher"]) for s in args.seeds
            ],
            f"cgrpo - best training-free ({reference['best_name']})": [
                (results[s][("cgrpo", vmr)], reference["best"]) for s in args.seeds
            ],
        }
        for name, per_seed in pairs.items():
            summary["comparisons"].append(
                {"comparison": name, "vmr": vmr, **bootstrap_over_seeds(per_seed)}
            )
    lines = [
        f"### Seeds {args.seeds}: differences at a {args.budget_frames}-frame budget (mean over seeds, 95 % interval over seeds and questions)",
        "",
        "| comparison | VMR | mean | 95 % CI | per seed |",
        "|---|---|---|---|---|",
    ]
    for c in summary["comparisons"]:
        per = ", ".join(f"{100 * v:+.1f}" for v in c["per_seed"])
        lines.append(
            f"| {c['comparison']} | {'yes' if c['vmr'] else 'no'} | {100 * c['mean']:+.1f} | "
            f"[{100 * c['ci95'][0]:+.1f}, {100 * c['ci95'][1]:+.1f}] | {per} |"
        )
    write_atomic(report_dir / "seeds.json", json.dumps(summary, indent=2) + "\n")
    write_atomic(report_dir / "seeds.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    main()
