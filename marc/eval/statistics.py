"""Summaries of per-question results and paired bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from marc.eval.sweep import QuestionResult


def summarise(results: Sequence[QuestionResult], kinds: Sequence[str]) -> dict:
    """Accuracy overall and per kind, answer-format rate, visual tokens and kept fraction."""
    if not results:
        raise ValueError("no questions were scored: nothing to summarise")
    count = len(results)
    per_kind = {}
    for kind in kinds:
        of_kind = [r.correct for r in results if r.kind == kind]
        if of_kind:
            per_kind[kind] = sum(of_kind) / len(of_kind)
    return {
        "accuracy": sum(r.correct for r in results) / count,
        "per_kind": per_kind,
        "format_rate": sum(r.well_formed for r in results) / count,
        "visual_tokens": sum(r.visual_tokens for r in results) / count,
        "kept_fraction": sum(r.kept_fraction for r in results) / count,
        "uncompressed_fraction": sum(r.uncompressed for r in results) / count,
        "questions": count,
    }


def paired_difference(
    results: Sequence[QuestionResult],
    baseline: Sequence[QuestionResult],
    resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """Accuracy of ``results`` minus ``baseline`` on the same questions, with a paired
    bootstrap 95 % interval (questions resampled with replacement, both settings together)."""
    by_id = {r.problem_id: r.correct for r in baseline}
    pairs = [
        (float(r.correct), float(by_id[r.problem_id])) for r in results if r.problem_id in by_id
    ]
    if not pairs:
        raise ValueError("the two settings share no question: no paired difference")
    diff = torch.tensor([a - b for a, b in pairs], dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(len(diff), (resamples, len(diff)), generator=generator)
    means = diff[index].mean(dim=1)
    low, high = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64))
    return {
        "difference": float(diff.mean()),
        "ci95": [float(low), float(high)],
        "pairs": len(pairs),
    }
