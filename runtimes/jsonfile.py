"""Reading the small JSON files that sit beside a model (configs, manifests)."""

from __future__ import annotations

import json
from pathlib import Path

from uner.errors import ModelNotFound


def read_json(path: Path) -> dict:
    """The object in ``path``; ``{}`` when the file does not exist, a clear error when unreadable."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"expected readable JSON in {path}, got {type(exc).__name__}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelNotFound(f"expected a JSON object in {path}, got a {type(data).__name__}")
    return data
