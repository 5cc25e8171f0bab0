"""How every benchmark hands over its table: written atomically beside the results, then printed."""

from __future__ import annotations

from pathlib import Path

from sat._atomic import atomic_write


def publish(path: str | Path, text: str) -> int:
    """Write ``text`` to ``path`` (folders created; never a partial file), print it; return 0 (exit code)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    print(text)
    return 0
