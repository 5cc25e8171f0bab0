"""The exceptions SAT raises. Every message is one line: what was wrong and how to fix it."""

from __future__ import annotations


class SATError(Exception):
    """Base class of every error SAT raises on purpose."""


class InputError(SATError, ValueError):
    """An input file, array or argument cannot be used (missing, corrupt, wrong shape, NaN...)."""


class UnsupportedFormatError(InputError):
    """The file extension or layout is not one SAT reads."""


class UnknownTermError(SATError, KeyError):
    """A prompt or term does not resolve to any concept of the knowledge tree."""

    def __init__(self, message: str, suggestions: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.suggestions = tuple(suggestions)

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class UntrainedPromptError(UnknownTermError):
    """A prompt names a structure the model was not trained on, or nothing the knowledge tree knows.

    ``suggestions``: the nearest trained concepts of the first such prompt; ``by_prompt``: prompt ->
    its nearest trained concepts.
    """

    def __init__(self, message: str, suggestions: tuple[str, ...] = (), *,
                 by_prompt: dict[str, tuple[str, ...]] | None = None) -> None:
        super().__init__(message, suggestions)
        self.by_prompt = dict(by_prompt or {})


class WeightsError(SATError):
    """Model weights or their config are missing, corrupt or of an unknown format."""


class ConfigError(SATError, ValueError):
    """A dataset card, recipe or curated terminology file is invalid."""
