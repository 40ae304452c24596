"""Under DDP a NaN loss on one process skips the step on every process, and they stay equal.

Two processes on the gloo backend run a small StageModule through Lightning, once with
automatic optimisation (as SFT and retriever pretraining) and once manual (as C-GRPO).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import sys

import lightning as L
import torch
from torch.utils.data import DataLoader

from marc.modules.base import StageModule


class Automatic(StageModule):
    """Process 1's loss is NaN at batches 1 and 3."""

    def __init__(self):
        super().__init__(optimizer=lambda p: torch.optim.AdamW(p, lr=0.1))
        self.w = torch.nn.Parameter(torch.ones(3))

    def loss(self, batch, batch_idx, rank, bad):
        loss = (self.w * batch["x"][0]).sum()
        return loss * float("nan") if self.global_rank == rank and batch_idx in bad else loss

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch, batch_idx, 1, (1, 3))
        return self.skipped_step_loss() if self.skip_nonfinite(loss) else loss


class Manual(Automatic):
    """Manual optimisation; process 0's loss is NaN at batch 2."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch, batch_idx, 0, (2,))
        if self.skip_nonfinite(loss):
            return None
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()


def collate(items):
    return {"x": torch.stack(items), "batch_size": len(items), "num_skipped": 0}


if __name__ == "__main__":
    for cls in (Automatic, Manual):
        torch.manual_seed(0)
        data = [torch.randn(3) for _ in range(12)]
        module = cls()
        trainer = L.Trainer(
            accelerator="cpu", strategy="ddp", devices=2, max_epochs=1, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        )
        trainer.fit(module, DataLoader(data, batch_size=1, collate_fn=collate))
        weights = ",".join(f"{v:.6f}" for v in module.w.tolist())
        # One write per line: the two processes share this stdout.
        sys.stdout.write(
            f"RESULT {cls.__name__} {trainer.global_rank} {module.nonfinite.skipped} {weights}\n"
        )
        sys.stdout.flush()
'''


@pytest.mark.slow
def test_every_process_skips_the_same_steps_under_ddp(tmp_path):
    script = tmp_path / "nonfinite_ddp.py"
    script.write_text(SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    rows = [line.split()[1:5] for line in result.stdout.splitlines() if line.startswith("RESULT")]
    assert len(rows) == 4, result.stdout[-2000:]
    by_kind = {}
    for kind, rank, skipped, weights in rows:
        by_kind.setdefault(kind, {})[rank] = (skipped, weights)
    assert set(by_kind) == {"Automatic", "Manual"}
    # Both processes skipped the steps that were NaN on either, and kept equal weights.
    assert by_kind["Automatic"]["0"] == by_kind["Automatic"]["1"]
    assert by_kind["Automatic"]["0"][0] == "2"
    assert by_kind["Manual"]["0"] == by_kind["Manual"]["1"]
    assert by_kind["Manual"]["0"][0] == "1"
    assert by_kind["Automatic"]["0"][1] != "1.000000,1.000000,1.000000"  # it did train
