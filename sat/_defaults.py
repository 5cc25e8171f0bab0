"""Defaults shared by the API, the CLIs and the model, in a module light enough for CLI start-up."""

# Presence gating: a window vetoes a prompt only when its presence head gives a probability
# below this (sat.model.network.vetoed).
PRESENCE_VETO = 0.01
