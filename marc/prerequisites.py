"""Build a stage's missing inputs (retriever, teacher, warm student) with their own configs.

A stage names what it needs in its YAML::

    prerequisites:
      build_missing: true
      artifacts:
        - {path: artifacts/teacher/model, config: configs/teacher.yaml}

Before ``fit`` each missing ``path`` is built by running ``python main.py fit --config
CONFIG`` in a child process (in list order, so later artifacts can use earlier ones), the
way a missing pretrained weight would be downloaded: once, with a log line naming it.
Only global rank 0 builds; other ranks wait for the artifact. Under Lightning's own
launcher (``--trainer.strategy=ddp --trainer.devices=N``) rank 0 builds before it starts
the other processes; under a launcher that starts every process at once (``torchrun``,
SLURM) the others poll for the artifact, which appears whole (artifacts are written to a
staging folder and renamed). The build runs in a child process without the distributed
environment variables, so it is a one-process run of its own config. With
``build_missing: false`` a missing artifact is an error naming the command that builds it.

An artifact may also name a ``source``: a model folder that ships with marc
(``marc/assets/``, checked against its sha256 sums, see ``marc.assets``), installed instead
of building it, as the embedded default's teacher is (``make reproduce`` trains it again
from scratch with its config).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from marc.assets import ASSETS, install_asset

log = logging.getLogger(__name__)

MAIN_SCRIPT = Path(__file__).resolve().parent.parent / "main.py"


@dataclass
class Artifact:
    """A file or folder a stage needs and the stage config that produces it."""

    path: str
    config: str
    args: list[str] = field(default_factory=list)  # extra command-line overrides
    source: str | None = None  # a shipped asset to install instead of building

    def command(self) -> list[str]:
        """The command that builds this artifact."""
        return [sys.executable, str(MAIN_SCRIPT), "fit", "--config", self.config, *self.args]


@dataclass
class Prerequisites:
    """What a stage needs before it can run, and whether to build what is missing."""

    build_missing: bool = True
    artifacts: list[Artifact] = field(default_factory=list)
    wait_timeout_s: float = 6 * 3600


class MissingPrerequisiteError(FileNotFoundError):
    """An artifact a stage needs does not exist and building it is switched off."""


def is_global_rank_zero() -> bool:
    """Whether this process is global rank 0 by its launcher's variables (alone: yes).

    ``RANK`` (torchrun, Lightning's child processes), ``SLURM_PROCID``; else Lightning's
    launcher on several nodes, whose first process on each node has only ``NODE_RANK`` and
    ``LOCAL_RANK``.
    """
    for name in ("RANK", "SLURM_PROCID"):
        if name in os.environ:
            return int(os.environ[name]) == 0
    return int(os.environ.get("NODE_RANK", 0)) == 0 and int(os.environ.get("LOCAL_RANK", 0)) == 0


def ensure_prerequisites(spec: Prerequisites | None) -> list[str]:
    """Make every artifact of ``spec`` exist; returns the paths that were built now."""
    if spec is None:
        return []
    built = []
    for artifact in spec.artifacts:
        path = Path(artifact.path)
        if path.exists():
            log.info("prerequisite %s found", path)
            continue
        command = " ".join(
            ["python", "main.py", "fit", "--config", artifact.config, *artifact.args]
        )
        if not spec.build_missing:
            raise MissingPrerequisiteError(f"missing prerequisite {path}; build it with: {command}")
        if artifact.source is not None:
            if not is_global_rank_zero():
                _wait_for(path, spec.wait_timeout_s)
                continue
            log.warning("prerequisite %s is missing: installing %s", path, artifact.source)
            install_asset(asset_folder(artifact.source), path)
            built.append(str(path))
            continue
        if not Path(artifact.config).is_file():
            raise FileNotFoundError(f"prerequisite {path} names a missing config {artifact.config}")
        if not is_global_rank_zero():
            _wait_for(path, spec.wait_timeout_s)
            continue
        log.warning("prerequisite %s is missing: building it with `%s`", path, command)
        start = time.perf_counter()
        result = subprocess.run(artifact.command(), env=single_process_env())
        if result.returncode != 0:
            raise RuntimeError(
                f"building prerequisite {path} failed: `{command}` exited {result.returncode}"
            )
        if not path.exists():
            raise RuntimeError(f"`{command}` finished but did not write {path}")
        log.warning("prerequisite %s built in %.0f s", path, time.perf_counter() - start)
        built.append(str(path))
    return built


# Variables by which torch.distributed, torchrun, SLURM and Lightning tell a process it is
# one of several: a build must not see them, or it would join (or wait for) the others.
DISTRIBUTED_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "GROUP_WORLD_SIZE",
    "ROLE_RANK",
    "ROLE_WORLD_SIZE",
    "ROLE_NAME",
    "NODE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_NODEID",
)
DISTRIBUTED_PREFIXES = ("TORCHELASTIC_", "PL_TRAINER_")


def asset_folder(source: str) -> Path:
    """``source`` as a folder: a path, or the name of a folder under ``marc/assets``."""
    path = Path(source)
    if path.is_dir():
        return path
    if (ASSETS / source).is_dir():
        return ASSETS / source
    raise FileNotFoundError(f"prerequisite source {source} is neither a folder nor a marc asset")


def single_process_env() -> dict[str, str]:
    """This process's environment without the variables of a distributed launch."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in DISTRIBUTED_VARIABLES and not key.startswith(DISTRIBUTED_PREFIXES)
    }


def _wait_for(path: Path, timeout_s: float) -> None:
    """Block a non-zero rank until rank 0 has built ``path``."""
    log.warning("waiting for global rank 0 to build prerequisite %s", path)
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for rank 0 to build {path}")
        time.sleep(2.0)
