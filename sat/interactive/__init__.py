"""Points, boxes, corrections and zoom-in beside text prompts.

- :mod:`sat.interactive.guides`: user points and boxes mapped into model space, the windows they
  change, the head's logits there and the component rule;
- :mod:`sat.interactive.session`: the state that lets :meth:`Segmentation.refine` recompute only
  the windows around new clicks;
- :mod:`sat.interactive.zoom`: zoom-out-zoom-in (a coarse pass, then a finer grid on each
  structure's region).
"""

from sat.interactive.guides import Guide, guides_for, region_of
from sat.interactive.session import Session

__all__ = ["Guide", "Session", "guides_for", "region_of"]
