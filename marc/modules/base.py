"""StageModule: what every marc LightningModule shares, whatever it trains.

- the optimizer and scheduler are injected (``OptimizerCallable`` / ``LRSchedulerCallable``
  from YAML) and built over :meth:`StageModule.trainable_parameters`, the scheduler stepping
  every optimizer step;
- :meth:`StageModule.has_samples`: a batch in which every sample was skipped as bad input
  holds no samples;
- :meth:`StageModule.zero_loss`: the loss of such a batch, a zero tied to every trainable
  parameter, so under DDP this process still joins the other processes' gradient
  all-reduce and every process stays identical.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable


class StageModule(L.LightningModule):
    """Base of the marc stages; see the module docstring."""

    def __init__(
        self,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ):
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler

    @staticmethod
    def has_samples(batch: dict) -> bool:
        """Whether the collated batch holds at least one sample (skipped ones are dropped)."""
        return bool(batch.get("batch_size"))

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters the optimizer updates (those that require gradients)."""
        return [p for p in self.parameters() if p.requires_grad]

    def zero_loss(self) -> torch.Tensor:
        """A zero loss whose graph reaches every trainable parameter (see the module docstring)."""
        return sum(p.sum() for p in self.trainable_parameters()) * 0.0

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.trainable_parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
