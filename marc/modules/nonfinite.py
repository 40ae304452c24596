"""NonFiniteLosses: skip a step whose loss is NaN or infinite, stop after several in a row.

A stage asks :meth:`StageModule.skip_nonfinite` before it lets a loss reach the optimizer.
One non-finite loss (a bad batch, a rare overflow) is skipped, counted and logged as
``train/skipped_nonfinite``, and training goes on; ``limit`` in a row mean the run has
diverged, and it stops with a FloatingPointError naming the step, what was wrong and the
last finite loss. Under DDP every rank must skip the same steps, or one would wait in the
gradient all-reduce for the others: the stage reduces the flag across ranks first, so this
class only sees the agreed outcome.
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)


class NonFiniteLosses:
    """Counts skipped steps and remembers the last finite loss; see the module docstring.

    Args:
        limit: consecutive non-finite steps that stop the run (``model.max_nonfinite_steps``).
    """

    def __init__(self, limit: int = 3):
        if limit < 1:
            raise ValueError(f"max_nonfinite_steps must be at least 1, got {limit}")
        self.limit = limit
        self.skipped = 0  # in this run
        self.in_a_row = 0
        self.last_finite: tuple[float, int] | None = None  # (loss, step)

    def state_dict(self) -> dict:
        """The counts and the last finite loss (a resumed run continues them)."""
        return {"skipped": self.skipped, "in_a_row": self.in_a_row, "last_finite": self.last_finite}

    def load_state_dict(self, state: dict) -> None:
        self.skipped, self.in_a_row = state["skipped"], state["in_a_row"]
        last = state["last_finite"]
        self.last_finite = None if last is None else (float(last[0]), int(last[1]))

    def record(self, bad: bool, value: float | None, step: int, detail: str = "") -> bool:
        """Note one step's outcome; True when it must be skipped (raises at the limit).

        ``bad`` is whether any rank's loss was non-finite; ``value`` is this rank's loss
        (None when it could not be computed, or for an empty batch) and ``detail`` says why
        or which questions. Every rank records the same outcomes, so all stop together.
        """
        if not bad:
            self.in_a_row = 0
            if value is not None:  # None: an empty batch, which has no loss of its own
                self.last_finite = (float(value), step)
            return False
        self.skipped += 1
        self.in_a_row += 1
        if value is None:
            what = "no loss"
        elif math.isfinite(value):
            what = f"loss {value:.6g} here, non-finite on another process"
        else:
            what = f"loss {value}"
        where = f"step {step}" + (f" ({detail})" if detail else "")
        if self.in_a_row >= self.limit:
            last = (
                f"the last finite loss was {self.last_finite[0]:.6g} at step {self.last_finite[1]}"
                if self.last_finite is not None
                else "no step had a finite loss"
            )
            raise FloatingPointError(
                f"non-finite loss at {self.in_a_row} steps in a row, the last at {where}: "
                f"{what}; {last}. Training stopped (model.max_nonfinite_steps="
                f"{self.limit}): lower the learning rate or check the data"
            )
        log.warning(
            "skipping %s: %s (a non-finite loss on this or another process); %d skipped so far",
            where,
            what,
            self.skipped,
        )
        return True
