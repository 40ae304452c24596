"""The zero-shot retriever: both towers of one small random SigLIP / CLIP saved locally."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from marc.configurable import build, describe
from marc.retrieval.dual_encoder import (
    DualEncoderError,
    PretrainedClipEncoder,
    PretrainedQueryEncoder,
    check_one_dual_encoder,
)
from marc.retrieval.encoders import ClipEncoderBase, QueryEncoderBase
from marc.retrieval.retriever import VisualMemoryRetriever
from marc.retrieval.segment import FixedWindowSegmenter


def _clips(count: int = 3, frames: int = 4) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [
        torch.randint(0, 256, (frames, 3, 40, 56), dtype=torch.uint8, generator=generator)
        for _ in range(count)
    ]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory, dual_encoder_writer):
    return dual_encoder_writer(tmp_path_factory.mktemp("clip") / "model", "clip")


@pytest.mark.parametrize("layout", ["siglip", "clip"])
def test_embeddings_are_the_models_own_normalised_features(layout, tiny_siglip_dir, clip_dir):
    folder = tiny_siglip_dir if layout == "siglip" else clip_dir
    clips, queries = PretrainedClipEncoder(str(folder)), PretrainedQueryEncoder(str(folder))
    size = 32 if layout == "siglip" else 24
    assert clips.embed_dim == queries.embed_dim == size
    videos = _clips()
    with torch.no_grad():
        embedded = clips(videos)
        texts = queries(["a red square moves left", "how many cars pass"])
    assert embedded.shape == (3, size) and texts.shape == (2, size)
    torch.testing.assert_close(embedded.norm(dim=-1), torch.ones(3))
    # The text embedding is the model's own text feature, normalised: no new projection.
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    batch = tokenizer(
        ["how many cars pass"], padding="max_length", max_length=16, return_tensors="pt"
    )
    inputs = {"input_ids": batch["input_ids"]}
    if layout == "clip":
        inputs["attention_mask"] = batch["attention_mask"]
    with torch.no_grad():
        reference = model.get_text_features(**inputs).pooler_output
    torch.testing.assert_close(texts[1:], F.normalize(reference, dim=-1), atol=1e-5, rtol=1e-4)
    # A clip's embedding is the mean of its frames' normalised image features.
    with torch.no_grad():
        single = [clips(video[i : i + 1]) for i in range(4) for video in videos[:1]]
    torch.testing.assert_close(embedded[0], F.normalize(torch.cat(single).mean(0), dim=0))
    # Each keeps only its own tower.
    assert clips.model.text_model is None and queries.model.vision_model is None


def test_towers_of_different_sizes_fail_naming_both(tmp_path, dual_encoder_writer):
    folder = dual_encoder_writer(tmp_path / "broken", "siglip", text_projection=24)
    for encoder in (PretrainedClipEncoder, PretrainedQueryEncoder):
        with pytest.raises(
            DualEncoderError, match=r"vision tower into 32 and the text tower into 24"
        ):
            encoder(str(folder))


def test_missing_folder_pieces_are_named(tmp_path, tiny_siglip_dir):
    with pytest.raises(DualEncoderError, match="no config.json"):
        PretrainedClipEncoder(str(tmp_path))
    import shutil

    copy = tmp_path / "no_tokenizer"
    shutil.copytree(tiny_siglip_dir, copy)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (copy / name).unlink()
    with pytest.raises(DualEncoderError, match=r"no_tokenizer: has no usable tokenizer"):
        PretrainedQueryEncoder(str(copy))


def test_towers_of_two_models_are_refused(tiny_siglip_dir, clip_dir):
    check_one_dual_encoder(
        PretrainedClipEncoder(str(clip_dir)), PretrainedQueryEncoder(str(clip_dir))
    )
    with pytest.raises(ValueError, match="both towers of one model"):
        check_one_dual_encoder(
            PretrainedClipEncoder(str(tiny_siglip_dir)), PretrainedQueryEncoder(str(clip_dir))
        )


def test_a_zero_shot_retriever_saves_and_reloads_offline(tiny_siglip_dir, tmp_path):
    clips = PretrainedClipEncoder(str(tiny_siglip_dir), max_frames_per_clip=2)
    queries = PretrainedQueryEncoder(str(tiny_siglip_dir))
    assert isinstance(clips, ClipEncoderBase) and isinstance(queries, QueryEncoderBase)
    retriever = VisualMemoryRetriever(FixedWindowSegmenter(4), clips, queries, k=2)
    frames = torch.cat(_clips(3, 4))
    before = retriever.retrieve("v", frames, "what colour comes first")
    retriever.save_pretrained(tmp_path / "retriever")
    spec = describe(clips)
    assert spec["init_args"] == {"model_dir": str(tiny_siglip_dir), "max_frames_per_clip": 2}
    assert isinstance(build(spec, ClipEncoderBase), PretrainedClipEncoder)
    loaded = VisualMemoryRetriever.from_pretrained(tmp_path / "retriever")
    after = loaded.retrieve("v", frames, "what colour comes first")
    assert after.spans == before.spans and after.scores == pytest.approx(before.scores, abs=1e-5)


def test_a_relation_head_can_be_added_for_fine_tuning(tiny_siglip_dir):
    queries = PretrainedQueryEncoder(str(tiny_siglip_dir), max_offset=1)
    embeddings, logits = queries.embed_with_offsets(["which comes after the red one"])
    assert embeddings.shape == (1, 32) and logits.shape == (1, 3)
    assert any(p.requires_grad for p in queries.model.parameters())


def test_the_contrastive_stage_fine_tunes_both_towers(tiny_siglip_dir, short_clips_dataset):
    from marc.data.datamodule import VideoQADataModule
    from marc.modules.retriever_pretraining import RetrieverPretraining

    module = RetrieverPretraining(
        clip_encoder=PretrainedClipEncoder(str(tiny_siglip_dir), max_frames_per_clip=2),
        query_encoder=PretrainedQueryEncoder(str(tiny_siglip_dir), max_offset=1),
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3),
    )
    data = VideoQADataModule(data_root=str(short_clips_dataset), max_frames=16, batch_size=4)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    vision = module.clip_encoder.model.vision_model.embeddings.patch_embedding.weight
    text = module.query_encoder.model.text_model.embeddings.token_embedding.weight
    before = (vision.detach().clone(), text.detach().clone())
    optimizer = module.configure_optimizers()
    loss = module.training_step(batch, 0)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and "offset_loss" in module.contrastive_loss(batch)
    assert not torch.equal(vision, before[0]) and not torch.equal(text, before[1])
