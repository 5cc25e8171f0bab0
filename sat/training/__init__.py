"""sat.training."""
