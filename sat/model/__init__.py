"""sat.model: the SAT network, its presets, weights I/O and sliding-window inference.

Example:
    >>> import torch
    >>> from sat.model import build_model, predict
    >>> net = build_model("sat-tiny").eval()
    >>> logits = predict(net, torch.zeros(1, 1, 40, 40, 40), torch.randn(2, 384))
    >>> logits.shape
    torch.Size([2, 40, 40, 40])
"""

from sat.model.config import PRESETS, ModelConfig, get_config
from sat.model.inference import predict, sw_batch_size_for
from sat.model.lean import lean_forward
from sat.model.network import SATNet, SATOutput, build_model, count_parameters, estimate_flops
from sat.model.weights import load_pretrained, save_pretrained

__all__ = [
    "PRESETS",
    "ModelConfig",
    "SATNet",
    "SATOutput",
    "build_model",
    "count_parameters",
    "estimate_flops",
    "get_config",
    "lean_forward",
    "load_pretrained",
    "predict",
    "save_pretrained",
    "sw_batch_size_for",
]
