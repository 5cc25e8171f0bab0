"""The original SAT text encoder: an MPNet (BioLORD-2023-C) with mean pooling, a projection and a modality embedding.

``encode(texts, modality=...)`` embeds each text as the original does: token ids are
``vocab['[CLS]']`` + the word pieces + ``vocab['[SEP]']`` (the literal strings looked up in the
vocabulary), padded with 0 (attention mask: id > 0), at most 256 tokens; the mean of the
masked last hidden states goes through Linear-GELU-Linear, and the embedding of the modality
(ct 0, mr 1, us 2, pet 3) is added. No normalisation.

A text that is the preferred name of a concept in the model's vocabulary is replaced by the
original class name of that concept (for the modality when it has one), so a prompt the
knowledge tree resolves ("kidney, left", "lt kidney") queries the network with the name it
was trained on ("left kidney"). Other texts are embedded as given, lower-cased.

The encoder of an imported model lives in the model folder: ``text/config.json`` (MPNet),
``text/model.safetensors`` and the tokenizer files in ``text/``.

Example:
    >>> enc = load_text_encoder("model_dir/text", vocabulary=config["vocabulary"])   # doctest: +SKIP
    >>> enc.encode(["left kidney"], modality="ct").shape                          # doctest: +SKIP
    torch.Size([1, 768])
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from sat._atomic import atomic_write
from sat.errors import InputError, WeightsError

log = logging.getLogger(__name__)

__all__ = ["OfficialTextEncoder", "load_text_encoder", "load_tokenizer", "MODALITY_CODES"]

MODALITY_CODES = {"ct": 0, "mr": 1, "mri": 1, "us": 2, "pet": 3}
MAX_LENGTH = 256
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def load_tokenizer(folder: str | os.PathLike):
    """The MPNet tokenizer in ``folder`` (vocab.txt and/or tokenizer.json; never downloads).

    Raises:
        WeightsError: no such folder, or no tokenizer with '[CLS]' and '[SEP]' in its vocabulary.
    """
    from transformers import AutoTokenizer

    path = Path(folder).expanduser()
    if not path.is_dir():
        raise WeightsError(f"tokenizer folder {path} does not exist; give the folder holding vocab.txt / tokenizer.json "
                           "of BioLORD-2023-C (or all-mpnet-base-v2: the same vocabulary)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise WeightsError(f"cannot read a tokenizer from {path} ({' '.join(str(exc).split())[:120]}); "
                           "give the folder holding vocab.txt / tokenizer.json of BioLORD-2023-C") from exc
    vocab = tokenizer.get_vocab()
    missing = [t for t in ("[CLS]", "[SEP]") if t not in vocab]
    if missing:
        raise WeightsError(f"the tokenizer in {path} has no {missing[0]} token; the original SAT uses the MPNet "
                           "vocabulary of BioLORD-2023-C / all-mpnet-base-v2")
    return tokenizer


class OfficialTextEncoder(nn.Module):
    """Text (+ modality) -> [N, D] query embeddings, as the original SAT knowledge encoder.

    Args:
        mpnet_config: ``transformers.MPNetConfig`` keyword arguments.
        tokenizer: a transformers tokenizer with the MPNet vocabulary.
        vocabulary: ``{modality: {concept id: original class name}}`` (see module docstring).
    """

    def __init__(self, mpnet_config: Mapping, tokenizer, *, vocabulary: Mapping | None = None) -> None:
        super().__init__()
        from transformers import MPNetConfig, MPNetModel

        self.bert = MPNetModel(MPNetConfig(**mpnet_config), add_pooling_layer=False)
        hidden = int(self.bert.config.hidden_size)
        self.projection = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.modality_embed = nn.Embedding(4, hidden)
        self.tokenizer = tokenizer
        self.vocabulary = {m: dict(v) for m, v in (vocabulary or {}).items()}
        self._names: dict[str, str] | None = None
        self.eval()

    @property
    def dim(self) -> int:
        """Output embedding size D."""
        return int(self.projection[2].out_features)

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input ids [B, T] int64, attention mask [B, T] int64) with the original rule."""
        tok = self.tokenizer
        cls_id, sep_id = tok.convert_tokens_to_ids("[CLS]"), tok.convert_tokens_to_ids("[SEP]")
        rows = [[cls_id, *tok.convert_tokens_to_ids(tok.tokenize(t)), sep_id] for t in texts]
        width = min(max(len(r) for r in rows), MAX_LENGTH)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            if len(row) > width:
                row = [*row[: width - 1], sep_id]
            ids[i, : len(row)] = torch.tensor(row)
        return ids, (ids > 0).long()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        """Token ids [B, T], mask [B, T], modality codes [B] -> embeddings [B, D]."""
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return self.projection(pooled) + self.modality_embed(modality)

    def query_text(self, text: str, modality: str) -> str:
        """The text the network is queried with: the original class name of a vocabulary concept's name, else ``text``."""
        if self._names is None:
            from sat import knowledge

            tree = knowledge.load()
            ids = {cid for names in self.vocabulary.values() for cid in names}
            self._names = {tree[cid].name.casefold(): cid for cid in ids if cid in tree}
        cid = self._names.get(text.casefold())
        if cid is None:
            return text.lower()
        own = self.vocabulary.get(modality, {})
        if cid in own:
            return own[cid]
        log.warning("%r has no class of its own for %s in the original vocabulary; using another modality's name",
                    text, modality)
        return next(names[cid] for names in self.vocabulary.values() if cid in names)

    def encode(self, texts: Sequence[str], *, modality: str | None = None, batch_size: int = 64) -> torch.Tensor:
        """Embed texts for one modality: N strings -> float32 [N, D], no gradient.

        Raises:
            InputError: no or unknown modality (the original needs one: ``"ct"``, ``"mr"``, ``"pet"``).
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        key = None if modality is None else str(modality).lower()
        if key not in MODALITY_CODES:
            raise InputError(f"the original SAT text encoder needs the image modality, got {modality!r}; "
                             "pass modality='ct', 'mr' or 'pet'")
        key = "mr" if key == "mri" else key
        queried = [self.query_text(t, key) for t in texts]
        out = torch.empty(len(texts), self.dim)
        with torch.inference_mode():
            for start in range(0, len(queried), batch_size):
                ids, mask = self.tokenize(queried[start: start + batch_size])
                codes = torch.full((len(ids),), MODALITY_CODES[key], dtype=torch.long)
                out[start: start + len(ids)] = self.forward(ids, mask, codes).float()
        return out.clone()

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json`` (MPNet), ``model.safetensors`` and the tokenizer files into ``folder``."""
        from safetensors.torch import save_file

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(out))
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        atomic_write(out / WEIGHTS, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
        text = json.dumps({"mpnet": _mpnet_kwargs(self.bert.config)}, indent=2)
        atomic_write(out / CONFIG, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))
        return out


def _mpnet_kwargs(config) -> dict:
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "max_position_embeddings", "relative_attention_num_buckets", "hidden_act", "layer_norm_eps",
            "pad_token_id", "bos_token_id", "eos_token_id")
    return {k: getattr(config, k) for k in keys}


def load_text_encoder(folder: str | os.PathLike, *, vocabulary: Mapping | None = None) -> OfficialTextEncoder:
    """Load the encoder :meth:`OfficialTextEncoder.save` wrote (raises :class:`WeightsError`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder)
    try:
        config = json.loads((path / CONFIG).read_text(encoding="utf-8"))["mpnet"]
        state = load_file(str(path / WEIGHTS))
    except (OSError, KeyError, ValueError, SafetensorError) as exc:
        raise WeightsError(f"the text encoder in {path} is missing or corrupt ({' '.join(str(exc).split())[:120]}); "
                           "import the model again with `sat import-official`") from exc
    encoder = OfficialTextEncoder(config, load_tokenizer(path), vocabulary=vocabulary)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path / WEIGHTS} does not match its config.json; import the model again") from exc
    return encoder.eval()
