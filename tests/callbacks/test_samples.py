"""SampleCompletionsCallback: rollout summaries as TensorBoard text, every n steps."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callbacks.samples import SampleCompletionsCallback, format_rollout

SUMMARY = [
    {
        "step": 0,
        "problem_id": "video_00000_q0",
        "question": "What colour is the circle? Options: A. red B. blue",
        "solution": "<answer>B</answer>",
        "a_teacher": 0.75,
        "completions": [
            {
                "text": "<think> a blue circle </think> <answer> B </answer>",
                "reward": 2.15,
                "advantage": 1.0,
                "components": {"accuracy": 1.0, "format": 1.0, "retention": 0.15},
            },
            {
                "text": "",
                "reward": 0.0,
                "advantage": -1.0,
                "components": {"accuracy": 0.0, "format": 0.0, "retention": 0.0},
            },
        ],
    }
]


class RecordingTensorBoardLogger(TensorBoardLogger):
    """TensorBoardLogger whose experiment records ``add_text`` calls instead of writing."""

    def __init__(self, save_dir: str):
        super().__init__(save_dir)
        self.texts: list[tuple[str, str, int]] = []

    @property
    def experiment(self):
        return SimpleNamespace(
            add_text=lambda tag, text, step: self.texts.append((tag, text, step))
        )


def fake_trainer(logger, step: int = 0):
    return SimpleNamespace(loggers=[logger], global_step=step, is_global_zero=True)


def run_steps(callback, logger, steps, summary=SUMMARY):
    module = SimpleNamespace(last_rollout=summary)
    for step in steps:
        callback.on_train_batch_end(fake_trainer(logger, step), module, None, {}, step)


def test_text_is_written_to_the_tensorboard_event_file(tmp_path):
    logger = TensorBoardLogger(str(tmp_path))
    run_steps(SampleCompletionsCallback(every_n_steps=1), logger, [0])
    logger.experiment.flush()
    events = EventAccumulator(logger.log_dir)
    events.Reload()
    assert "samples/text_summary" in events.Tags()["tensors"]
    text = events.Tensors("samples/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "video_00000_q0" in text and "&lt;think&gt;" in text


def test_logs_every_n_steps_even_when_steps_jump(tmp_path):
    logger = RecordingTensorBoardLogger(str(tmp_path))
    # num_iterations=2 makes global_step advance by 2 per batch.
    run_steps(SampleCompletionsCallback(every_n_steps=3), logger, [0, 2, 4, 6, 8, 10])
    assert [step for _, _, step in logger.texts] == [0, 4, 8]


def test_max_samples_limits_the_questions(tmp_path):
    logger = RecordingTensorBoardLogger(str(tmp_path))
    second = dict(SUMMARY[0], problem_id="video_00001_q1")
    run_steps(SampleCompletionsCallback(max_samples=1), logger, [0], SUMMARY + [second])
    ((_, text, _),) = logger.texts
    assert "video_00000_q0" in text and "video_00001_q1" not in text


def test_no_op_without_tensorboard_or_summary(tmp_path):
    callback = SampleCompletionsCallback(every_n_steps=1)
    run_steps(callback, CSVLogger(str(tmp_path)), [0])  # no error, nothing to write
    logger = RecordingTensorBoardLogger(str(tmp_path))
    run_steps(callback, logger, [0], summary=[])
    assert logger.texts == []


def test_format_rollout_is_a_markdown_table():
    text = format_rollout(SUMMARY)
    assert "a_teacher: 0.750" in text
    assert "| completion | reward | advantage | accuracy | format | retention |" in text
    assert "&lt;answer&gt; B &lt;/answer&gt;" in text and "(empty)" in text
    assert "<think>" not in text


def test_bad_interval():
    with pytest.raises(ValueError, match="every_n_steps"):
        SampleCompletionsCallback(every_n_steps=0)
