import json

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel, CLIPConfig, CLIPModel

from marc.configurable import build, describe
from marc.data.synthetic import GeneratorConfig, generate_dataset
from marc.retrieval.encoders import ClipEncoder, QueryEncoder, subsample_frames
from marc.vocabulary import QUERY_SPECIAL_TOKENS, build_query_tokenizer


def _clip(frames: int, size: int = 112) -> torch.Tensor:
    return torch.randint(0, 256, (frames, 3, size, size), dtype=torch.uint8)


def _unit(x: torch.Tensor) -> bool:
    return torch.allclose(x.norm(dim=-1), torch.ones(len(x)), atol=1e-5)


def test_clip_encoder_shapes_and_norms():
    torch.manual_seed(0)
    encoder = ClipEncoder(embed_dim=32).eval()
    with torch.no_grad():
        out = encoder.encode_clips([_clip(1), _clip(7), _clip(3, size=56)])
        batch = encoder(torch.stack([_clip(2), _clip(2)]))
        single = encoder(_clip(5))
    assert out.shape == (3, 32) and batch.shape == (2, 32) and single.shape == (1, 32)
    assert _unit(out) and _unit(batch) and _unit(single)


def test_clip_encoder_rejects_empty_clip():
    with pytest.raises(ValueError, match="clip 1"):
        ClipEncoder(embed_dim=8).encode_clips([_clip(2), _clip(0)])


def test_subsample_frames_spreads_over_the_clip():
    clip = torch.arange(20).view(20, 1, 1, 1)
    picked = subsample_frames(clip, 4).flatten().tolist()
    assert picked == [2, 7, 12, 17]
    assert subsample_frames(clip[:3], 4).flatten().tolist() == [0, 1, 2]
    assert subsample_frames(clip, 1).flatten().tolist() == [10]


def test_query_encoder_shapes_norms_and_determinism():
    torch.manual_seed(0)
    encoder = QueryEncoder(embed_dim=32).eval()
    texts = ["What colour is the circle in the event with the navy plain background?", "a"]
    with torch.no_grad():
        out = encoder.encode_texts(texts)
        again = encoder.encode_texts(texts[:1])
    assert out.shape == (2, 32) and _unit(out)
    assert torch.allclose(out[:1], again, atol=1e-5)  # padding does not change an embedding


def test_word_tokenizer_covers_generated_text(tmp_path):
    tokenizer = build_query_tokenizer(extra_tokens=["zebra"])
    assert tokenizer.convert_tokens_to_ids(list(QUERY_SPECIAL_TOKENS)) == [0, 1, 2, 3]
    generate_dataset(tmp_path / "data", GeneratorConfig(num_videos=3))
    texts = []
    for line in (tmp_path / "data" / "train.jsonl").read_text().splitlines():
        row = json.loads(line)
        texts += [row["problem"], *row["options"], *(e["caption"] for e in row["events"])]
    texts += ["Select the best answer to the following multiple-choice question.", "Zebra."]
    ids = tokenizer(texts)["input_ids"]
    assert all(tokenizer.unk_token_id not in row for row in ids)
    assert tokenizer("red circle")["input_ids"][0] == tokenizer.cls_token_id
    tokenizer.save_pretrained(tmp_path / "tok")
    assert AutoTokenizer.from_pretrained(tmp_path / "tok")(texts)["input_ids"] == ids


def test_query_encoder_from_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    tokenizer = build_query_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    saved = BertModel(config, add_pooling_layer=False).eval()
    saved.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    encoder = QueryEncoder.from_pretrained(tmp_path, embed_dim=16).eval()
    batch = encoder.tokenize(["the red circle moves left", "a"])
    with torch.no_grad():
        expected = saved(**batch).last_hidden_state
        loaded = encoder.text_model(**batch).last_hidden_state
        out = encoder.encode_texts(["the red circle moves left", "a"])
    assert torch.allclose(expected, loaded, atol=1e-6)
    assert out.shape == (2, 16) and _unit(out)


def test_query_encoder_uses_text_tower_of_dual_encoder(tmp_path):
    tokenizer = build_query_tokenizer()
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            eos_token_id=tokenizer.sep_token_id,
            bos_token_id=tokenizer.cls_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=28,
            patch_size=14,
        ),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    encoder = QueryEncoder.from_pretrained(tmp_path, embed_dim=8).eval()
    assert not any("vision" in name for name, _ in encoder.named_parameters())
    with torch.no_grad():
        out = encoder.encode_texts(["a green square stays still"])
    assert out.shape == (1, 8) and _unit(out)


def test_described_encoders_rebuild_and_load_their_weights():
    clip, query = ClipEncoder(embed_dim=8, max_frames_per_clip=2), QueryEncoder(embed_dim=8)
    rebuilt_clip = build(describe(clip), ClipEncoder)
    rebuilt_query = build(describe(query), QueryEncoder)
    rebuilt_clip.load_state_dict(clip.state_dict())
    rebuilt_query.load_state_dict(query.state_dict())
    assert rebuilt_clip.max_frames_per_clip == 2 and rebuilt_query.embed_dim == 8


def test_relation_head_predicts_offsets_from_the_same_pass():
    torch.manual_seed(0)
    encoder = QueryEncoder(embed_dim=8, max_offset=2).eval()
    texts = ["Which background comes right after the navy plain background?", "a"]
    with torch.no_grad():
        embeddings, logits = encoder.embed_with_offsets(texts)
        assert torch.allclose(embeddings, encoder.encode_texts(texts))
        assert logits.shape == (2, 5)
        # Class i is offset i - max_offset: force class 4 (offset +2) for every text.
        encoder.offset_head.weight.zero_()
        encoder.offset_head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0]))
        assert encoder.predict_offsets(texts) == [2, 2]
    rebuilt = build(describe(encoder), QueryEncoder)
    rebuilt.load_state_dict(encoder.state_dict())
    assert rebuilt.max_offset == 2 and rebuilt.predict_offsets(texts) == [2, 2]


def test_query_encoder_without_relation_head_predicts_offset_zero():
    encoder = QueryEncoder(embed_dim=8)
    assert encoder.offset_head is None and encoder.embed_with_offsets(["a"])[1] is None
    assert encoder.predict_offsets(["a", "b"]) == [0, 0]
    with pytest.raises(ValueError, match="max_offset"):
        QueryEncoder(max_offset=-1)
