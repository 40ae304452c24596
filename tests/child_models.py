"""Stage modules for test runs in child processes (named by class path in their configs)."""

from __future__ import annotations

import dataclasses

from marc.modules.evaluation import VideoQAEvaluation


def answered_right(problem_id: str) -> bool:
    """The questions KnownAnswersEvaluation gets right: ids ending in an odd digit."""
    return problem_id[-1] in "13579"


class KnownAnswersEvaluation(VideoQAEvaluation):
    """The real evaluation (generation, loaders, shards, metrics reduced over processes)
    whose answers are replaced by the right one for the questions of ``answered_right``,
    so its accuracy is known and neither 0 nor 1 on a few questions."""

    def evaluate_batch(self, batch: dict, split: str) -> None:
        generate = self.vlm.generate

        def known_answers(videos, prompts, **kwargs):
            output = generate(videos, prompts, **kwargs)
            texts = [
                f"<answer> {answer} </answer>" if answered_right(problem_id) else text
                for text, answer, problem_id in zip(
                    output.texts, batch["answer"], batch["problem_id"]
                )
            ]
            return dataclasses.replace(output, texts=texts)

        self.vlm.generate = known_answers
        try:
            super().evaluate_batch(batch, split)
        finally:
            del self.vlm.generate  # the instance attribute: the class's method again
