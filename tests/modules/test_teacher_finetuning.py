"""TeacherFinetuning's training aids: target clips, random compression and the vision probe,
drawn per step (resumable), never at evaluation, and absent from the exported model."""

import lightning as L
import pytest
import torch
from safetensors import safe_open

from marc.data.datamodule import VideoQADataModule
from marc.data.synthetic import GeneratorConfig
from marc.modules.teacher_finetuning import TeacherFinetuning
from marc.modules.vision_probe import FIELDS, VisionProbe
from marc.modules.vlm_stage import sft_target


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher_aids")
    dm = VideoQADataModule(
        data_root=str(root),
        generator=GeneratorConfig(num_videos=4, num_frames=16),
        max_frames=16,
        batch_size=4,
    )
    dm.prepare_data()
    return next(iter(dm.train_dataloader()))


def test_rows_name_the_object_a_question_asks_about_and_each_objects_cell(batch):
    for kind, named, events, targets in zip(
        batch["question_kind"], batch["target_objects"], batch["events"], batch["target_events"]
    ):
        assert (len(named) == 1) == (kind in ("attribute", "motion"))
        for index in named:
            assert 0 <= index < len(events[targets[0]]["objects"])
        assert all(0 <= obj["cell"] < 4 for event in events for obj in event["objects"])


def test_object_reasoning_describes_only_the_named_object():
    caption = "a grey plain background with a red circle moves left and a blue square stays still"
    target = sft_target([caption], [0], None, "B", ["A. red", "B. blue"], "option_text", [1])
    assert (
        target
        == "<think> a grey plain background with a blue square stays still </think> <answer> blue </answer>"
    )
    assert "red circle" in sft_target(
        [caption], [0], None, "B", ["A. red", "B. blue"], "option_text"
    )


def test_clips_and_compression_are_drawn_in_training_only(batch):
    torch.manual_seed(0)
    module = TeacherFinetuning(clip_prob=1.0, compression_prob=1.0, compression_budgets=[1])
    module.train()
    videos = module.compressed_inputs(batch)
    assert all(v.num_tokens == 4 for v in videos)  # one group of 2 x 2 tokens
    module.eval()
    full = module.compressed_inputs(batch)
    assert all(v.num_tokens == 8 * 4 for v in full)  # 16 frames: 8 groups, all kept


def test_a_clip_is_the_target_events_frames(batch):
    module = TeacherFinetuning(clip_prob=1.0).train()
    videos = module.compressed_inputs(batch)
    for video, spans, named in zip(videos, batch["event_spans"], batch["target_events"]):
        frames = max(spans[i][1] for i in named) - min(spans[i][0] for i in named)
        assert video.grid[0] == -(-frames // 2)


def test_draws_depend_on_the_step_only():
    module = TeacherFinetuning(compression_prob=0.5)
    first = torch.rand(3, generator=module._generator())
    assert torch.equal(first, torch.rand(3, generator=module._generator()))


def test_probe_targets_mark_each_objects_token_and_the_background(batch):
    events, spans = batch["events"][0], batch["event_spans"][0]
    targets = VisionProbe.targets(events, spans, (8, 2, 2))
    assert targets.shape == (8, 4, len(FIELDS))
    event = next(i for i, (a, b) in enumerate(spans) if a <= 0 < b)
    occupied = {obj["cell"] for obj in events[event]["objects"]}
    assert {token for token in range(4) if targets[0, token, 0] > 0} == occupied
    assert VisionProbe.targets([], spans, (8, 2, 2)) is None


def test_the_probe_trains_the_vision_tower_and_stays_out_of_the_export(batch, tmp_path):
    L.seed_everything(0)
    module = TeacherFinetuning(
        probe_weight=1.0,
        export_dir=str(tmp_path / "export"),
        optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3),
    )
    module.train()
    optimizer = module.configure_optimizers()
    losses = []
    for _ in range(15):
        module.compressed_inputs(batch)
        probe = module.extra_losses(batch, [], None)["probe"][1]
        optimizer.zero_grad()
        probe.backward()
        optimizer.step()
        losses.append(probe.item())
    assert losses[-1] < 0.7 * losses[0], losses
    module.export(str(tmp_path / "export"))
    with safe_open(tmp_path / "export/model.safetensors", "pt") as weights:
        assert not any("probe" in key or "heads" in key for key in weights.keys())


@pytest.mark.parametrize(
    "kwargs", [{"clip_prob": 1.5}, {"compression_prob": -0.1}, {"probe_weight": -1}]
)
def test_bad_settings_are_named(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        TeacherFinetuning(**kwargs)


def test_a_training_step_with_every_aid_adds_the_probe_to_the_loss(batch):
    module = TeacherFinetuning(
        clip_prob=0.5,
        compression_prob=0.5,
        probe_weight=1.0,
        answer_with="option_text",
        reasoning="object",
    ).train()
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, float(value))
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss) and loss.requires_grad
    assert logged["train/loss"] == pytest.approx(
        logged["train/ce"] + logged["train/probe"], rel=1e-5
    )
