"""Nothing loads from the network unless asked to: every loader reads local files only.

``tests/conftest.py`` fails any connection or name look-up from this process (and records
it in ``network_attempts``); these tests name a hub id where a local path belongs and
check that the error is marc's, raised before anything is fetched.
"""

from __future__ import annotations

import pytest
import timm
import torch
from transformers import BertConfig, BertModel

from marc.models.vlm import VideoVLM
from marc.retrieval.encoders import ClipEncoder, QueryEncoder
from marc.vocabulary import build_query_tokenizer

HUB_ID = "google-bert/bert-base-uncased"


def test_the_network_guard_is_on(network_attempts):
    import socket

    before = len(network_attempts)
    with pytest.raises(RuntimeError, match="tried to"):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    assert len(network_attempts) == before + 1


def test_a_query_encoder_never_downloads_a_hub_id(network_attempts):
    before = len(network_attempts)
    with pytest.raises(FileNotFoundError, match="not a local model folder.*allow_download"):
        QueryEncoder(pretrained=HUB_ID)
    assert len(network_attempts) == before


def test_a_query_encoder_reads_a_local_folder_offline(tmp_path, network_attempts):
    tokenizer = build_query_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )  # fmt: skip
    BertModel(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    before = len(network_attempts)
    encoder = QueryEncoder(embed_dim=8, pretrained=str(tmp_path))
    assert encoder.encode_texts(["a question"]).shape == (1, 8)
    assert len(network_attempts) == before


def test_timm_weights_need_an_explicit_opt_in(network_attempts):
    before = len(network_attempts)
    with pytest.raises(ValueError, match="would download .*allow_download=True"):
        ClipEncoder(pretrained=True)
    assert len(network_attempts) == before


def test_timm_weights_load_from_a_local_file(tmp_path, network_attempts):
    torch.manual_seed(0)
    source = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    torch.save(source.state_dict(), tmp_path / "backbone.pth")
    before = len(network_attempts)
    encoder = ClipEncoder(embed_dim=8, pretrained=str(tmp_path / "backbone.pth"))
    loaded = encoder.backbone.state_dict()
    assert all(torch.equal(value, loaded[name]) for name, value in source.state_dict().items())
    assert len(network_attempts) == before
    with pytest.raises(FileNotFoundError, match="missing weights file: .*nope.pth"):
        ClipEncoder(pretrained=str(tmp_path / "nope.pth"))


def test_a_model_name_that_is_not_a_folder_is_not_fetched(network_attempts):
    before = len(network_attempts)
    with pytest.raises(FileNotFoundError, match="model folder not found: Qwen"):
        VideoVLM.from_pretrained("Qwen/Qwen2.5-VL-3B-Instruct")
    assert len(network_attempts) == before
