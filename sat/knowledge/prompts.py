"""How a model answers each prompt, given the concepts it was trained on: :func:`plan_prompts`.

A prompt is resolved on the knowledge tree, then:

- a trained concept is segmented as itself (``kind="concept"``);
- a concept with trained descendants ("kidneys", "lumbar vertebrae") is the union of the
  topmost trained ones (``kind="union"``); when the tree lists labelled parts the model never
  learnt ("vertebrae": the cervical ones), the union covers only part of the structure and
  the plan says which parts are left out (``missing``);
- anything else -- a concept the model never learnt ("brain") or text the tree cannot resolve
  ("zzqx blorp") -- follows the ``on_untrained`` policy:

  ``"error"`` (default): raise :class:`~sat.errors.UntrainedPromptError` naming the nearest
  trained concepts. A model asked about a structure it never saw still outputs *a* mask (the
  shipped model gives "brain" 21 ml in an abdominal CT), and a silent empty mask would read as
  "structure absent", which is a clinical claim; so by default there is no answer at all.
  ``"empty"``: an empty mask (``kind="empty"``), with a warning. ``"text"``: embed the prompt as
  free text and let the model try (``kind="text"``; open vocabulary, unvalidated).

Example:
    >>> from sat.knowledge import load
    >>> [p.kind for p in plan_prompts(load(), ["kidneys", "brain"], {"kidney_left", "kidney_right"},
    ...                               on_untrained="empty")]
    ['union', 'empty']
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sat.errors import InputError, UntrainedPromptError
from sat.knowledge.concept import Concept
from sat.knowledge.tree import KnowledgeTree

__all__ = ["ON_UNTRAINED", "PromptPlan", "check_prompts", "log_plans", "plan_prompts", "trained_parts",
           "untrained_parts"]

log = logging.getLogger(__name__)

ON_UNTRAINED = ("error", "empty", "text")
_SHOWN = 8  # parts listed in a note before "and N more"


@dataclass(frozen=True)
class PromptPlan:
    """How one prompt is segmented.

    Attributes:
        prompt: the prompt as given (whitespace collapsed).
        concept: the knowledge-tree concept it names, or None (not resolvable).
        kind: ``"concept"`` | ``"union"`` (of ``members``) | ``"text"`` (free-text query) | ``"empty"``.
        texts: the query texts (the members' names; the prompt itself for ``"text"``; none for ``"empty"``).
        members: the trained concept ids whose masks are used.
        matched: how the prompt matched the tree ("id", "exact", "bag", "laterality", "typo", ... or "none").
        missing: labelled parts of ``concept`` the model was not trained on (left out of a union).
        note: one line saying how the prompt was answered.
    """

    prompt: str
    concept: Concept | None
    kind: str
    texts: tuple[str, ...]
    members: tuple[str, ...] = ()
    matched: str = "none"
    missing: tuple[str, ...] = ()
    note: str = ""


def trained_parts(tree: KnowledgeTree, concept: Concept, trained: Collection[str]) -> list[Concept]:
    """Topmost trained concepts below ``concept`` (their union is its mask); lesions only for a lesion."""
    below = [c for c in tree.descendants(concept) if c.id in trained and (concept.is_lesion or not c.is_lesion)]
    ids = {c.id for c in below}
    return [c for c in below if not ({a.id for a in tree.ancestors(c)} & ids)]


def untrained_parts(tree: KnowledgeTree, concept: Concept, parts: Sequence[Concept]) -> list[Concept]:
    """Topmost labelled concepts below ``concept`` that ``parts`` do not cover (neither one of them,
    above one nor below one): what a union of ``parts`` leaves out of ``concept``."""
    covered = {c.id for c in parts}
    for part in parts:
        covered |= {a.id for a in tree.ancestors(part)} | {d.id for d in tree.descendants(part)}
    left_out = [c for c in tree.descendants(concept)
                if c.datasets and c.id not in covered and (concept.is_lesion or not c.is_lesion)]
    ids = {c.id for c in left_out}
    return [c for c in left_out if not ({a.id for a in tree.ancestors(c)} & ids)]


def _listing(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_SHOWN])
    return shown + (f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else "")


def _plan_known(tree: KnowledgeTree, text: str, concept: Concept, matched: str,
                trained: Collection[str]) -> PromptPlan | None:
    """The plan of a resolved prompt the model can answer (None: untrained)."""
    if not trained or concept.id in trained:
        return PromptPlan(text, concept, "concept", (concept.name,), (concept.id,), matched,
                          note=f"trained concept {concept.id}")
    parts = trained_parts(tree, concept, trained)
    if not parts:
        return None
    missing = tuple(c.id for c in untrained_parts(tree, concept, parts))
    members = tuple(c.id for c in parts)
    note = f"union of {len(parts)} trained concepts: {_listing(members)}"
    if missing:
        note += f"; partial: the model was not trained on {_listing(missing)}"
    return PromptPlan(text, concept, "union", tuple(c.name for c in parts), members, matched, missing, note)


def _plan_untrained(text: str, concept: Concept | None, matched: str, policy: str) -> PromptPlan:
    what = f"{concept.id} is not a trained concept" if concept else "not a knowledge-tree term"
    if policy == "empty":
        return PromptPlan(text, concept, "empty", (), (), matched, note=f"{what}: empty mask (on_untrained='empty')")
    return PromptPlan(text, concept, "text", (concept.name if concept else text,), (), matched,
                      note=f"{what}: free-text query, unvalidated (on_untrained='text')")


def plan_prompts(tree: KnowledgeTree, prompts: Sequence[str], trained: Collection[str], *,
                 on_untrained: str = "error", model: str = "the model") -> list[PromptPlan]:
    """One :class:`PromptPlan` per prompt (see the module docstring for the rules).

    Args:
        tree: the knowledge tree.
        prompts: cleaned prompt strings.
        trained: concept ids the model was trained on (empty: every resolved concept counts as trained).
        on_untrained: ``"error" | "empty" | "text"``: what an untrained or unresolvable prompt gets.
        model: the model's name, for the error message.

    Raises:
        InputError: unknown ``on_untrained``.
        UntrainedPromptError: ``on_untrained="error"`` and some prompts are untrained or unknown
            (one line for all of them, each with its nearest trained concepts).
    """
    if on_untrained not in ON_UNTRAINED:
        raise InputError(f"on_untrained must be one of {', '.join(map(repr, ON_UNTRAINED))}, got {on_untrained!r}")
    plans, refused = [], {}
    for text in prompts:
        concept, matched = tree.match(text)
        plan = _plan_known(tree, text, concept, matched, trained) if concept is not None else None
        if plan is None:
            if on_untrained == "error":
                refused[text] = concept
                continue
            plan = _plan_untrained(text, concept, matched, on_untrained)
        plans.append(plan)
    if refused:
        raise _refusal(tree, refused, trained, model)
    return plans


def _refusal(tree: KnowledgeTree, refused: dict[str, Concept | None], trained: Collection[str],
             model: str) -> UntrainedPromptError:
    nearest = {text: tuple(c.name for c in tree.nearest_among(text, trained, k=3)) for text in refused}
    parts = []
    for text, concept in refused.items():
        what = (f"{text!r} ({concept.id}) is not a concept {model} was trained on" if concept is not None
                else f"{text!r} is not a knowledge-tree term")
        shown = ", ".join(map(repr, nearest[text]))
        parts.append(f"{what} (nearest trained: {shown})" if shown else what)
    message = ("; ".join(parts) + "; a model asked about a structure it never learnt still outputs a mask, so "
               "none is given: pick a trained structure (`sat models --concepts`), or pass on_untrained='empty' "
               "(CLI: --on-untrained empty) for an empty mask or on_untrained='text' (--on-untrained text) for an "
               "unvalidated free-text query")
    return UntrainedPromptError(message, nearest[next(iter(refused))], by_prompt=nearest)


def check_prompts(prompts: str | Sequence[str]) -> list[str]:
    """Prompts as a list of whitespace-collapsed strings (InputError: none, empty, not a string, repeated)."""
    items = [prompts] if isinstance(prompts, str) else list(prompts) if prompts is not None else []
    if not items:
        raise InputError("no prompt given; pass a prompt such as 'liver' or a list of prompts")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InputError(f"prompts must be strings, got {type(item).__name__} {item!r}")
        text = " ".join(item.split())
        if not text:
            raise InputError("empty prompt; give the name of a structure, e.g. 'left kidney'")
        if text in out:
            raise InputError(f"prompt {text!r} is given twice; give each prompt once")
        out.append(text)
    return out


def log_plans(plans: Sequence[PromptPlan]) -> None:
    """One line per kind of answer a user should know about (corrections, partial unions, untrained prompts)."""
    for p in plans:
        if p.concept is not None and p.matched in ("typo", "laterality", "generic", "modality"):
            log.info("prompt %r read as %r (%s, %s match)", p.prompt, p.concept.name, p.concept.id, p.matched)
        if p.kind == "union":
            (log.warning if p.missing else log.info)("prompt %r: %s", p.prompt, p.note)
    unknown = [repr(p.prompt) for p in plans if p.kind == "text" and p.concept is None]
    untrained = [f"{p.prompt!r} ({p.concept.id})" for p in plans if p.kind == "text" and p.concept is not None]
    empty = [repr(p.prompt) for p in plans if p.kind == "empty"]
    if unknown:
        log.warning("%d prompt(s) not in the knowledge tree, embedded as free text (open vocabulary, unvalidated): %s",
                    len(unknown), ", ".join(unknown))
    if untrained:
        log.warning("%d prompt(s) name concepts this model was not trained on, embedded as free text (unvalidated): %s",
                    len(untrained), ", ".join(untrained))
    if empty:
        log.warning("%d prompt(s) the model was not trained on get an empty mask (on_untrained='empty'; empty means "
                    "'not segmented', not 'absent'): %s", len(empty), ", ".join(empty))
