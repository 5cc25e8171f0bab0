"""sat.knowledge: the anatomy vocabulary behind prompts, training and evaluation (never imports torch).

Example:
    >>> import sat.knowledge as sk
    >>> sk.resolve("kidney, left").id
    'kidney_left'
    >>> [c.id for c in sk.load().labelled_descendants("lung", dataset="TotalSegmentator/total")][:2]
    ['lung_lower_lobe_left', 'lung_lower_lobe_right']
"""

from __future__ import annotations

from sat.errors import UnknownTermError
from sat.knowledge.concept import Concept
from sat.knowledge.tree import KnowledgeTree, artifact_path, load, resolve

__all__ = ["Concept", "KnowledgeTree", "UnknownTermError", "artifact_path", "load", "resolve"]
