"""Run ``main.py`` in a child process, SIGKILL it after a checkpoint, read its TensorBoard logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = Path(__file__).resolve().parents[1]


def child_env() -> dict[str, str]:
    """The environment of a child run: this checkout's code first, one thread (determinism)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return env


def main_command(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "main.py"), *args]


def run_main(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``main.py args`` to the end in ``cwd``; fails the test with its output if it fails."""
    result = subprocess.run(
        main_command(*args),
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def checkpoint_step(path: Path) -> int | None:
    """The global step of a checkpoint file, None while it is missing or being written."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])
    except Exception:  # noqa: BLE001 (missing, half-written or being replaced: look again)
        return None


def run_and_kill(cwd: Path, checkpoint: Path, min_step: int, *args: str, timeout: float = 600):
    """Start ``main.py args``, SIGKILL it once ``checkpoint`` holds step ``min_step`` or later.

    Returns the step of the checkpoint it was killed after. The run must still be going
    when the checkpoint appears: a run that ended first fails the test.
    """
    log = (cwd / "killed.log").open("w")
    process = subprocess.Popen(
        main_command(*args), cwd=cwd, env=child_env(), stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            step = checkpoint_step(checkpoint) if checkpoint.exists() else None
            if step is not None and step >= min_step:
                break
            if process.poll() is not None:
                raise AssertionError(
                    f"the run ended (exit {process.returncode}) before a checkpoint of step "
                    f"{min_step}:\n" + (cwd / "killed.log").read_text()[-4000:]
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no checkpoint of step {min_step} in {timeout:.0f} s")
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    return step


def scalars(log_dir: Path, tag: str) -> dict[str, dict[int, float]]:
    """``{version: {step: value}}`` of one scalar tag in every run under ``log_dir``."""
    runs = {}
    for version in sorted(p for p in log_dir.iterdir() if p.is_dir()):
        events = EventAccumulator(str(version), size_guidance={"scalars": 0})
        events.Reload()
        if tag in events.Tags()["scalars"]:
            runs[version.name] = {e.step: e.value for e in events.Scalars(tag)}
    return runs
