"""MARCCLI: LightningCLI with marc's defaults (seed, overwriting config saves, subclass mode)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.cli import LightningCLI

from marc.data.datamodule import VideoQADataModule


class MARCCLI(LightningCLI):
    """LightningCLI whose model and data are chosen (and swapped) by ``class_path`` in YAML."""

    def __init__(self, args: list[str] | None = None, **kwargs: Any):
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(
            L.LightningModule,
            VideoQADataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            **kwargs,
        )
