"""Fixtures of the model tests."""

from tests.official_fixtures import imported_tiny, official_files, official_fixture  # noqa: F401
