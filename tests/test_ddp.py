"""Two processes on the gloo backend run a real stage through the command line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]


@pytest.mark.slow
def test_two_process_ddp_fit_on_cpu(tmp_path):
    command = [
        sys.executable,
        str(REPO / "main.py"),
        "fit",
        "--config",
        str(REPO / "configs/teacher.yaml"),
        "--trainer.accelerator=cpu",
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.callbacks=[]",
        "--trainer.enable_checkpointing=false",
        "--model.export_dir=export",
        "--data.data_root=data",
        "--data.generator.num_videos=6",
        "--data.generator.num_frames=16",
        "--data.max_frames=16",
        "--data.batch_size=2",
        "--data.eval_batch_size=2",
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stderr + result.stdout
    assert (tmp_path / "export/config.json").is_file()
    saved = tmp_path / "artifacts/logs/teacher/version_0/config.yaml"
    assert saved.is_file()
    events = list((tmp_path / "artifacts/logs/teacher").rglob("events.out.tfevents.*"))
    assert events
    json.loads((tmp_path / "export/config.json").read_text())
