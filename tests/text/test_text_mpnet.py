"""The original SAT text encoder: tokenisation rule, class-name lookup, modality, loading errors."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from sat.errors import InputError, WeightsError
from sat.text.mpnet import MAX_LENGTH, OfficialTextEncoder, load_tokenizer

MPNET = {"vocab_size": 101, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
         "intermediate_size": 64, "max_position_embeddings": 514, "relative_attention_num_buckets": 32,
         "layer_norm_eps": 1e-5}
VOCAB = {"ct": {"kidney_left": "left kidney", "liver": "liver"}, "mr": {"liver": "liver"}}


@pytest.fixture(scope="module")
def encoder(official_files):
    torch.manual_seed(0)
    return OfficialTextEncoder(MPNET, load_tokenizer(official_files["tokenizer"]), vocabulary=VOCAB)


def test_tokens_are_literal_cls_and_sep_padded_with_zero(encoder):
    vocab = encoder.tokenizer.get_vocab()
    ids, mask = encoder.tokenize(["left kidney", "liver"])
    assert ids[0].tolist() == [vocab["[CLS]"], vocab["left"], vocab["kidney"], vocab["[SEP]"]]
    assert ids[1].tolist() == [vocab["[CLS]"], vocab["liver"], vocab["[SEP]"], 0]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    long_ids, _ = encoder.tokenize(["liver " * 400])
    assert long_ids.shape == (1, MAX_LENGTH) and long_ids[0, -1].item() == vocab["[SEP]"]


def test_padding_does_not_change_an_embedding(encoder):
    alone = encoder.encode(["liver"], modality="ct")
    batched = encoder.encode(["liver", "left kidney upper lobe"], modality="ct")
    assert torch.allclose(alone[0], batched[0], atol=1e-5)
    assert not torch.allclose(encoder.encode(["liver"], modality="mr"), alone)  # the modality embedding is added


def test_concept_names_query_the_original_class_name(encoder, caplog):
    import sat.knowledge as sk

    name = sk.load()["kidney_left"].name
    assert encoder.query_text(name, "ct") == "left kidney"
    assert encoder.query_text("Some Free Text", "ct") == "some free text"
    with caplog.at_level(logging.WARNING):
        assert encoder.query_text(name, "mr") == "left kidney"
    assert "no class of its own for mr" in caplog.text
    with pytest.raises(InputError, match="needs the image modality"):
        encoder.encode(["liver"], modality=None)


def test_tokenizer_errors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "vocab.txt").write_text("<s>\n<pad>\n</s>\n<unk>\n[UNK]\nliver\n", encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "MPNetTokenizer"}), encoding="utf-8")
    with pytest.raises(WeightsError, match=r"no \[CLS\] token"):
        load_tokenizer(tmp_path)
