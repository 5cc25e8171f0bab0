"""``sat import-official``: turn the original SAT-Nano / SAT-Pro checkpoints into a SAT model folder.

The folder (``model.safetensors`` + ``config.json``, the text encoder in ``text/``) opens with
:func:`sat.load_model` and gives everything SAT gives (any input format, prompts resolved on the
knowledge tree, parents as unions, outputs on the input grid) with the authors' weights.
Its ``config.json`` holds

- ``concepts``: the concept ids of the original vocabulary (any modality);
- ``vocabulary``: ``{modality: {concept id: original class name}}`` (the text each concept is
  queried with, see :mod:`sat.knowledge.vocabulary`);
- ``inference``: the original pipeline's defaults (crop to voxels > 0, whole-volume z-score,
  windows at half-window stride, probabilities blended with a gaussian of sigma window/8).

Example::

    sat import-official --vision Nano/nano.pth --text Nano/nano_text_encoder.pth \\
        --tokenizer BioLORD-2023-C/ -o sat-nano-official/
    sat segment ct.nii.gz -p "left kidney" --model sat-nano-official/ -o out/
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from sat.errors import InputError, WeightsError

log = logging.getLogger(__name__)

__all__ = ["import_official", "INFERENCE"]

# the original inference pipeline (evaluate/inference_engine.py and data/inference_dataset.py of the authors' code)
INFERENCE = {"preprocess": "official", "overlap": 0.5, "blend": "official", "threshold": 0.5}
NETWORK_NAMES = {"sat-official-nano": "SAT-Nano", "sat-official-pro": "SAT-Pro"}


def _build(vision: Path, text: Path, tokenizer: Path, patch_size: Sequence[int], vocabulary: dict):
    from sat.model import official
    from sat.model.network import SATNet
    from sat.text.mpnet import OfficialTextEncoder, load_tokenizer

    tok = load_tokenizer(tokenizer)  # cheap checks first
    vstate = official.read_state_dict(vision)
    config = official.vision_config(vstate, patch_size=patch_size)
    net = SATNet(config)
    net.load_state_dict(official.vision_state(vstate, config), strict=True)
    del vstate
    tstate = official.read_state_dict(text)
    encoder = OfficialTextEncoder(official.text_config(tstate), tok, vocabulary=vocabulary)
    encoder.load_state_dict(official.text_state(tstate, encoder.state_dict()), strict=True)
    if encoder.dim != config.text_dim:
        raise WeightsError(f"the text encoder gives {encoder.dim}-d queries, the network takes {config.text_dim}; "
                           "give the text file released with this network")
    return net.eval(), encoder.eval()


def import_official(
    vision: str | os.PathLike,
    text: str | os.PathLike,
    *,
    tokenizer: str | os.PathLike,
    output: str | os.PathLike,
    vocabulary: str | os.PathLike | None = None,
    patch_size: Sequence[int] = (288, 288, 96),
) -> Path:
    """Write a SAT model folder from the original checkpoints (nothing is written on error).

    Args:
        vision: the vision checkpoint (``Nano/nano.pth`` or ``Pro/SAT_Pro.pth``).
        text: its text-encoder checkpoint (``Nano/nano_text_encoder.pth`` or ``Pro/text_encoder.pth``).
        tokenizer: folder with the MPNet tokenizer files of BioLORD-2023-C (vocab.txt / tokenizer.json).
        output: the model folder to create (must not exist, or be empty).
        vocabulary: the authors' ``terminology_list.json`` (default: the copy beside a source checkout).
        patch_size: the window the network was trained on (its positional encoding is fixed to it).

    Returns:
        The model folder.

    Raises:
        WeightsError: unreadable, unsafe, incomplete or mismatched checkpoints or tokenizer;
        InputError: ``output`` exists and is not an empty folder.
    """
    from sat.knowledge.vocabulary import default_vocabulary_file, official_vocabulary
    from sat.model.weights import save_pretrained

    out = Path(output).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"output {out} already exists; give a new folder name with -o")
    vocab = official_vocabulary(vocabulary if vocabulary is not None else default_vocabulary_file())
    net, encoder = _build(Path(vision).expanduser(), Path(text).expanduser(), Path(tokenizer).expanduser(),
                          patch_size, vocab)
    concepts = sorted({cid for names in vocab.values() for cid in names})
    extra = {
        "text_encoder": {"type": "sat-official", "path": "text"},
        "concepts": concepts,
        "vocabulary": vocab,
        "inference": dict(INFERENCE),
        "source": {"network": NETWORK_NAMES.get(net.config.preset, net.config.preset),
                   "vision": Path(vision).name, "text": Path(text).name,
                   "terms": "weights by the authors of SAT (HuggingFace zzh99/SAT); their terms apply"},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.part-", dir=out.parent))
    try:
        save_pretrained(net, stage, extra=extra)
        encoder.save(stage / "text")
        if out.exists():
            out.rmdir()  # checked empty above
        os.rename(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    log.info("imported %s (%d concepts) into %s", extra["source"]["network"], len(concepts), out)
    return out
