"""Encode once, ask many: the persistent clip memory (marc/answer/store.py)."""

from __future__ import annotations

import shutil

import pytest

from marc.answer.answerer import load_answerer
from marc.answer.questions import make_question
from marc.answer.store import ClipMemoryError

OPTIONS = ["A. red", "B. blue", "C. green", "D. white"]


@pytest.fixture
def answerer_at(tiny_vlm_dir, tiny_retriever_dir):
    def build(folder):
        return load_answerer(tiny_vlm_dir, tiny_retriever_dir, folder, max_new_tokens=4)

    return build


def ask(answerer, video, text="What colour is the circle?"):
    return answerer.answer(make_question(video, text, OPTIONS))


def test_a_second_question_skips_decoding_segmenting_and_embedding(answerer_at, videos, tmp_path):
    answerer = answerer_at(tmp_path / "memory")
    first = ask(answerer, videos[0])
    second = ask(answerer, videos[0], "What shape is the red object?")
    assert not first.cached and second.cached
    assert first.seconds["segment"] > 0 and first.seconds["embed"] > 0
    assert second.seconds["segment"] == 0 and second.seconds["embed"] == 0
    assert set(first.seconds) == {
        "decode", "segment", "embed", "search", "encode", "compress", "prefill", "generate"
    }  # fmt: skip


def test_a_cached_video_answers_as_a_fresh_one(answerer_at, videos, tmp_path):
    """Only the retrieved clips are decoded from a cached video: same clips, same tokens."""
    warm = answerer_at(tmp_path / "memory")
    ask(warm, videos[0])
    cached = ask(warm, videos[0])
    fresh = ask(answerer_at(tmp_path / "other"), videos[0])
    assert cached.cached and not fresh.cached
    assert cached.clips == fresh.clips
    assert cached.completion == fresh.completion
    assert cached.visual_tokens == fresh.visual_tokens


def test_the_memory_grows_and_is_read_back_by_the_next_process(answerer_at, videos, tmp_path):
    folder = tmp_path / "memory"
    first = answerer_at(folder)
    ask(first, videos[0])
    ask(first, videos[1])
    again = answerer_at(folder)  # a new process: loads the saved memory
    assert ask(again, videos[0]).cached and ask(again, videos[1]).cached
    assert len({m["video_id"] for m in again.store.memory._metadata}) == 2


def test_a_changed_file_is_indexed_again(answerer_at, videos, tmp_path):
    video = tmp_path / "mine.mp4"
    shutil.copy(videos[0], video)
    answerer = answerer_at(tmp_path / "memory")
    ask(answerer, video)
    shutil.copy(videos[1], video)  # same path, other content
    changed = ask(answerer, video)
    assert not changed.cached


def test_a_corrupt_clip_memory_names_the_folder_and_how_to_rebuild(answerer_at, videos, tmp_path):
    folder = tmp_path / "memory"
    ask(answerer_at(folder), videos[0])
    (index,) = folder.glob("*/index.bin")
    index.write_bytes(index.read_bytes()[:-7] + b"corrupt")
    with pytest.raises(ClipMemoryError, match="rm -r") as caught:
        answerer_at(folder)
    assert str(index.parent) in str(caught.value)


def test_cached_visual_tokens_skip_decoding_and_encoding_the_clips(
    tiny_vlm_dir, tiny_retriever_dir, videos, tmp_path
):
    answerer = load_answerer(
        tiny_vlm_dir, tiny_retriever_dir, tmp_path / "memory", max_new_tokens=4, cache_tokens=True
    )
    first = ask(answerer, videos[0])
    again = ask(answerer, videos[0])
    assert again.seconds["encode"] == 0 and again.completion == first.completion
    assert again.clips == first.clips and again.visual_tokens == first.visual_tokens
