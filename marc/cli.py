"""MARCCLI: LightningCLI with marc's defaults (seed, overwriting config saves, subclass mode)."""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
from jsonargparse import ActionYesNo
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from marc.data.datamodule import VideoQADataModule
from marc.prerequisites import Prerequisites, ensure_prerequisites

# Lightning warns when a manually optimised module (C-GRPO) is checkpointed every N steps
# without keeping its weights from before the step. The checkpoint after the step is the
# one a resumed run must start from (its loader and loops are past that step), so the
# advice does not apply.
warnings.filterwarnings(
    "ignore", message="Using ModelCheckpoint with manual optimization and every_n_train_steps"
)


class MARCCLI(LightningCLI):
    """LightningCLI whose model and data are chosen (and swapped) by ``class_path`` in YAML.

    Adds a ``prerequisites`` section: artifacts a stage needs (a trained retriever, a
    teacher, a warm student) are built with their own configs before the stage's classes
    are instantiated (see ``marc.prerequisites``).
    """

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

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--prerequisites",
            type=Prerequisites | None,
            default=None,
            help="artifacts this stage needs and the configs that build them",
        )
        parser.add_argument(
            "--resume",
            action=ActionYesNo,
            default=False,
            help="predict: keep the lines already in the output file and skip their questions",
        )

    def instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self.subcommand is not None:
            ensure_prerequisites(_as_prerequisites(config.get("prerequisites")))
        super().instantiate_classes()
        if config.get("resume") and hasattr(self.model, "resume"):
            self.model.resume = True


def _as_prerequisites(value: Any) -> Prerequisites | None:
    """The parsed ``prerequisites`` section as a dataclass (jsonargparse gives a Namespace)."""
    if value is None or isinstance(value, Prerequisites):
        return value
    from marc.prerequisites import Artifact

    data = value.as_dict() if hasattr(value, "as_dict") else dict(value)
    data["artifacts"] = [
        a if isinstance(a, Artifact) else Artifact(**(a.as_dict() if hasattr(a, "as_dict") else a))
        for a in data.get("artifacts") or []
    ]
    return Prerequisites(**data)
