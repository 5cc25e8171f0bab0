"""TextEncoder: shapes, normalisation, no gradient, modality, laterality, free text, errors."""

from __future__ import annotations

import pytest
import torch

from sat.errors import InputError, WeightsError
from sat.text import TextEncoder, laterality_of, load_encoder


def test_encode_shape_unit_norm_and_no_grad(base_encoder):
    texts = ["left kidney", "liver", "the third lumbar vertebra", "L3"]
    out = base_encoder.encode(texts)
    assert out.shape == (4, base_encoder.dim) and base_encoder.dim == 384
    assert out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert not out.requires_grad and out.grad_fn is None


def test_batching_and_sorting_keep_input_order(base_encoder):
    texts = ["a much longer prompt about the right adrenal gland", "liver", "spleen", "kidney"]
    together = base_encoder.encode(texts)
    alone = torch.cat([base_encoder.encode([t]) for t in texts])
    assert torch.allclose(together, alone, atol=1e-5)


def test_any_free_text_works(base_encoder):
    texts = ["", "😀 what is this?", "x" * 2000, "segment the thing next to the liver please"]
    out = base_encoder.encode(texts)
    assert out.shape == (4, 384) and torch.isfinite(out).all()
    assert base_encoder.encode("liver").shape == (1, 384)  # a single string is one prompt


def test_modality_changes_the_embedding(base_encoder):
    out = base_encoder.encode(["liver"] * 4, modality=[None, "ct", "mr", "PET"])
    sims = out @ out.T
    assert (sims[torch.triu(torch.ones(4, 4, dtype=torch.bool), 1)] < 0.999).all()
    assert torch.allclose(base_encoder.encode(["liver"], modality="mri"), out[2:3], atol=1e-6)


def test_bad_modality_and_inputs_raise(base_encoder):
    with pytest.raises(InputError, match="unknown modality"):
        base_encoder.encode(["liver"], modality="xray")
    with pytest.raises(InputError, match="one per text"):
        base_encoder.encode(["liver", "spleen"], modality=["ct"])
    with pytest.raises(InputError, match="list of strings"):
        base_encoder.encode(["liver", 3])


@pytest.mark.parametrize(
    ("text", "side"),
    [("left kidney", 1), ("Kidney, RIGHT", 2), ("lt adrenal", 1), ("ren dexter", 2), ("kidney_left", 1),
     ("both left and right kidneys", 0), ("liver", 0), ("leftover", 0), ("bright spot", 0), ("L kidney", 1),
     ("L3 vertebra", 0), ("R5 rib", 0), ("Linke Lunge", 1), ("lobus inferior pulmonis sinistri", 1),
     ("lefft kidney", 1), ("rigth lung", 2), ("rihgt lung", 2), ("lft kidney", 1), ("light", 0), ("eight rib", 0)],
)
def test_laterality_of(text, side):
    assert laterality_of(text) == side


def test_laterality_feature_separates_sides(base_encoder):
    encoder = TextEncoder(None, tuned_layers=0, laterality_feature=True)
    plain = base_encoder.encode(["left kidney", "right kidney"])
    sided = encoder.encode(["left kidney", "right kidney"])
    assert float(sided[0] @ sided[1]) < float(plain[0] @ plain[1]) - 0.2


def test_split_forward_equals_full_pass():
    encoder = TextEncoder(None, tuned_layers=1)
    tokens = encoder.tokenize(["left kidney", "the liver"])
    side, modality = torch.tensor([1, 0]), torch.tensor([0, 1])
    with torch.no_grad():
        split = encoder.top(encoder.bottom(**tokens), tokens["attention_mask"], side=side, modality=modality)
    assert torch.allclose(split, encoder.encode(["left kidney", "the liver"], modality=[None, "ct"]), atol=1e-5)
    assert encoder.split == 5 and all(k.startswith(("bert.encoder.layer.5.", "proj", "modality", "side")) for k in encoder.delta_keys())


def test_tuned_layers_out_of_range():
    with pytest.raises(InputError, match="tuned_layers"):
        TextEncoder(None, tuned_layers=7)


def test_load_encoder_errors(tmp_path):
    with pytest.raises(WeightsError, match="unknown text encoder"):
        load_encoder(tmp_path / "nothing-here")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match="cannot load"):
        load_encoder(tmp_path)


def test_load_encoder_accepts_a_local_bert_directory(base_encoder):
    from sat.text.encoder import base_model_dir

    other = load_encoder(base_model_dir())
    assert torch.allclose(other.encode(["spleen"]), base_encoder.encode(["spleen"]), atol=1e-6)


def test_the_encoder_and_the_knowledge_tree_share_one_list_of_side_words():
    from sat import knowledge
    from sat.knowledge.normalize import LATERALITY, LEFT_WORDS, RIGHT_WORDS

    tree = knowledge.load()
    assert not LEFT_WORDS & RIGHT_WORDS
    for word in LEFT_WORDS | RIGHT_WORDS:  # every side word means the same side to both
        side = 1 if word in LEFT_WORDS else 2
        assert laterality_of(f"{word} kidney") == side, word
        assert LATERALITY[word] == ("left", "right")[side - 1]
        assert tree.resolve(f"{word} kidney").id == ("kidney_left", "kidney_right")[side - 1], word
