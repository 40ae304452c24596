"""A saved retriever folder: what it holds, how it loads, and errors that name the bad file."""

import json

import pytest
import torch

from marc.retrieval.encoders import ClipEncoder, QueryEncoder
from marc.retrieval.memory import VideoMemory
from marc.retrieval.retriever import RetrieverFolderError, VisualMemoryRetriever
from marc.retrieval.segment import ContentChangeSegmenter, FixedWindowSegmenter


@pytest.fixture
def saved(tmp_path):
    """A small retriever with one indexed video, saved to ``tmp_path / "retriever"``."""
    torch.manual_seed(0)
    retriever = VisualMemoryRetriever(
        FixedWindowSegmenter(4),
        ClipEncoder(embed_dim=8, image_size=56),
        QueryEncoder(embed_dim=8, max_offset=1),
        k=2,
        max_clip_frames=3,
    )
    frames = torch.randint(0, 256, (12, 3, 56, 56), dtype=torch.uint8)
    retriever.index_video("v", frames)
    path = retriever.save_pretrained(tmp_path / "retriever")
    return retriever, path, frames


def test_the_config_describes_every_part_by_class_path(saved):
    _, path, _ = saved
    config = json.loads((path / "retriever.json").read_text())
    assert config["format_version"] == 2
    assert config["segmenter"] == {
        "class_path": "marc.retrieval.segment.FixedWindowSegmenter",
        "init_args": {"window": 4},
    }
    assert config["clip_encoder"]["class_path"] == "marc.retrieval.encoders.ClipEncoder"
    # The weights are in clip_encoder.pt: loading must never ask timm for pretrained ones.
    assert config["clip_encoder"]["init_args"]["pretrained"] is False
    assert config["query_encoder"]["init_args"]["max_offset"] == 1
    assert (config["k"], config["max_clip_frames"], config["frame_multiple"]) == (2, 3, 2)


def test_a_loaded_retriever_answers_like_the_saved_one(saved):
    retriever, path, frames = saved
    loaded = VisualMemoryRetriever.from_pretrained(path)
    assert isinstance(loaded.segmenter, FixedWindowSegmenter) and loaded.segmenter.window == 4
    question = "What colour is the circle in the event with the navy plain background?"
    before, after = (
        retriever.retrieve("v", frames, question),
        loaded.retrieve("v", frames, question),
    )
    assert after.clip_indices == before.clip_indices
    assert after.scores == pytest.approx(before.scores)
    assert VisualMemoryRetriever.from_pretrained(path, k=1).k == 1


def test_a_version_1_folder_still_loads(saved):
    _, path, _ = saved
    config = json.loads((path / "retriever.json").read_text())
    old = {
        "clip_encoder": config["clip_encoder"]["init_args"],
        "query_encoder": config["query_encoder"]["init_args"],
        "segmenter": {"class": "FixedWindowSegmenter", "args": {"window": 4}},
        "k": 2,
        "max_clip_frames": 3,
    }
    (path / "retriever.json").write_text(json.dumps(old))
    assert VisualMemoryRetriever.from_pretrained(path).segmenter.window == 4


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "clip_encoder.pt").write_bytes(b"not a state dict"), "clip_encoder.pt"),
        (lambda p: (p / "query_encoder.pt").write_bytes(b""), "query_encoder.pt"),
        (lambda p: (p / "query_encoder.pt").unlink(), "missing .*query_encoder.pt"),
        (lambda p: (p / "retriever.json").write_text("{}"), "retriever.json.*format_version"),
        (lambda p: (p / "retriever.json").write_text("{oops"), "retriever.json: not valid JSON"),
        (lambda p: (p / "retriever.json").unlink(), "no retriever.json"),
    ],
    ids=["corrupt-pt", "empty-pt", "missing-pt", "empty-json", "bad-json", "no-json"],
)
def test_a_damaged_folder_names_the_file(saved, damage, message):
    _, path, _ = saved
    damage(path)
    with pytest.raises(RetrieverFolderError, match=message):
        VisualMemoryRetriever.from_pretrained(path)


def test_a_config_without_a_field_or_with_a_foreign_class_names_the_field(saved):
    _, path, _ = saved
    config = json.loads((path / "retriever.json").read_text())
    missing = {key: value for key, value in config.items() if key != "segmenter"}
    (path / "retriever.json").write_text(json.dumps(missing))
    with pytest.raises(RetrieverFolderError, match="field 'segmenter' is missing"):
        VisualMemoryRetriever.from_pretrained(path)
    foreign = {**config, "segmenter": {"class_path": "collections.OrderedDict", "init_args": {}}}
    (path / "retriever.json").write_text(json.dumps(foreign))
    with pytest.raises(RetrieverFolderError, match="'segmenter'.*not a Segmenter"):
        VisualMemoryRetriever.from_pretrained(path)


def test_a_state_dict_of_another_encoder_names_the_file_and_the_field(saved, tmp_path):
    _, path, _ = saved
    torch.save(ClipEncoder(embed_dim=16, image_size=56).state_dict(), path / "clip_encoder.pt")
    with pytest.raises(RetrieverFolderError, match="clip_encoder.pt does not fit.*'clip_encoder'"):
        VisualMemoryRetriever.from_pretrained(path)


def test_saving_never_leaves_a_half_written_folder(saved, monkeypatch):
    retriever, path, _ = saved
    before = sorted(p.name for p in path.iterdir())

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(retriever.memory, "save", fail)
    retriever.segmenter = ContentChangeSegmenter()
    with pytest.raises(OSError, match="disk full"):
        retriever.save_pretrained(path)
    assert sorted(p.name for p in path.iterdir()) == before
    assert isinstance(VisualMemoryRetriever.from_pretrained(path).segmenter, FixedWindowSegmenter)


def test_a_memory_of_another_dimension_names_the_folder(saved):
    _, path, _ = saved
    VideoMemory(16).save(path / "memory")
    with pytest.raises(RetrieverFolderError, match=r"memory: a memory of dimension 16, .* embed 8"):
        VisualMemoryRetriever.from_pretrained(path)
