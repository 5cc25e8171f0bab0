"""sat.data."""
