"""Build a stage's missing inputs (retriever, teacher, warm student) with their own configs.

A stage names what it needs in its YAML::

    prerequisites:
      build_missing: true
      artifacts:
        - {path: artifacts/teacher/model, config: configs/teacher.yaml}

Before ``fit`` each missing ``path`` is built by running ``python main.py fit --config
CONFIG`` in a child process (in list order, so later artifacts can use earlier ones), the
way a missing pretrained weight would be downloaded: once, with a log line naming it.
Only global rank 0 builds; other ranks wait for the artifact. With ``build_missing:
false`` a missing artifact is an error naming the command that builds it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

MAIN_SCRIPT = Path(__file__).resolve().parent.parent / "main.py"


@dataclass
class Artifact:
    """A file or folder a stage needs and the stage config that produces it."""

    path: str
    config: str
    args: list[str] = field(default_factory=list)  # extra command-line overrides

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


def _global_rank() -> int:
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if name in os.environ:
            return int(os.environ[name])
    return 0


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
        if not Path(artifact.config).is_file():
            raise FileNotFoundError(f"prerequisite {path} names a missing config {artifact.config}")
        if _global_rank() != 0:
            _wait_for(path, spec.wait_timeout_s)
            continue
        log.warning("prerequisite %s is missing: building it with `%s`", path, command)
        start = time.perf_counter()
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
        result = subprocess.run(artifact.command(), env=env)
        if result.returncode != 0:
            raise RuntimeError(
                f"building prerequisite {path} failed: `{command}` exited {result.returncode}"
            )
        if not path.exists():
            raise RuntimeError(f"`{command}` finished but did not write {path}")
        log.warning("prerequisite %s built in %.0f s", path, time.perf_counter() - start)
        built.append(str(path))
    return built


def _wait_for(path: Path, timeout_s: float) -> None:
    """Block a non-zero rank until rank 0 has built ``path``."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for rank 0 to build {path}")
        time.sleep(2.0)
