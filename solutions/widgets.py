"""Interactive controls for the chapters (ipywidgets).

The controls here precompute one figure per setting and switch between them with links that run in the
browser (``jslink``), so they keep working on the static website, where no Python kernel is running, as well
as in a live notebook.
"""

from __future__ import annotations

import io
import os
from typing import Callable, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt

__all__ = ["figure_to_png", "precomputed_explorer"]


def figure_to_png(fig, dpi: int = 80) -> bytes:
    """PNG bytes of a matplotlib figure; the figure is closed afterwards."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def precomputed_explorer(draw: Callable[[float, float], object], first: Sequence[float], second: Sequence[float],
                         first_label: str, second_label: str, first_value=None, second_value=None):
    """Two sliders that show the figure ``draw(x, y)`` for each pair of slider values.

    Every figure is drawn once, up front, and stored in an ``Image`` widget; the sliders select the image
    through ``jslink`` to ``Stack`` widgets, so switching needs no kernel.

    Args:
        draw: ``draw(x, y)`` returns a matplotlib Figure for ``x`` in ``first`` and ``y`` in ``second``.
        first, second: the values offered by each slider (non-empty).
        first_label, second_label: the sliders' descriptions.
        first_value, second_value: the initial selections (default: the first values).

    Returns:
        An ``ipywidgets.VBox`` holding the two sliders and the figure. While nbgrader grades a notebook
        (``NBGRADER_EXECUTION`` is set) no figure is drawn and the box only says so: grading does not show
        figures, and drawing them all would spend most of a student's time budget.

    Raises:
        ValueError: if a list of values is empty or an initial value is not among them.
    """
    first, second = list(first), list(second)
    if not first or not second:
        raise ValueError("each slider needs at least one value")
    first_value = first[0] if first_value is None else first_value
    second_value = second[0] if second_value is None else second_value
    if first_value not in first or second_value not in second:
        raise ValueError("the initial values must be among the slider values")
    if os.environ.get("NBGRADER_EXECUTION"):
        return widgets.VBox([widgets.HTML("(interactive figure: not drawn while grading)")])
    style = {"description_width": "initial"}
    slider_x = widgets.SelectionSlider(options=first, value=first_value, description=first_label,
                                       continuous_update=True, style=style)
    slider_y = widgets.SelectionSlider(options=second, value=second_value, description=second_label,
                                       continuous_update=True, style=style)
    rows = []
    for x in first:
        images = [widgets.Image(value=figure_to_png(draw(x, y)), format="png") for y in second]
        row = widgets.Stack(images, selected_index=second.index(second_value))
        widgets.jslink((slider_y, "index"), (row, "selected_index"))
        rows.append(row)
    stack = widgets.Stack(rows, selected_index=first.index(first_value))
    widgets.jslink((slider_x, "index"), (stack, "selected_index"))
    return widgets.VBox([slider_x, slider_y, stack])
