"""Whether training loops show a tqdm progress bar."""

from __future__ import annotations

import os

__all__ = ["show_progress"]


def show_progress(progress: bool | None = None) -> bool:
    """``progress`` if given; otherwise True unless the environment variable ``CI`` or ``TQDM_DISABLE`` is set
    (CI logs, the website build and grading run quietly)."""
    if progress is not None:
        return bool(progress)
    return not (os.environ.get("CI") or os.environ.get("TQDM_DISABLE"))
