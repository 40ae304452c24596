"""``make demo``: the headline C-GRPO job on the embedded default, then the comparison table.

Runs ``python main.py fit --config configs/cgrpo.yaml`` (which first builds its missing
prerequisites: dataset, retriever and clip memory, teacher, warm student) and then
``python -m marc.eval.report``, printing the accuracy of every model and training-free
compressor at budgets of 1 to 8 frames, with and without the retriever, the plot paths,
and the wall-clock time of each part.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(command: list[str]) -> float:
    """Run a command from the repository root; returns its wall-clock seconds."""
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    return time.perf_counter() - start


def main() -> None:
    timings = {
        "fit_cgrpo_with_prerequisites_s": run(
            [sys.executable, "main.py", "fit", "--config", "configs/cgrpo.yaml"]
        ),
        "report_s": run([sys.executable, "-m", "marc.eval.report"]),
    }
    print(json.dumps({k: round(v, 1) for k, v in timings.items()}))


if __name__ == "__main__":
    main()
