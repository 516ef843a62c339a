"""Interactive controls for the chapters (ipywidgets).

The controls here precompute one figure per setting and switch between them with links that run in the
browser (``jslink``), so they keep working on the static website, where no Python kernel is running, as well
as in a live notebook. The preference widget needs the kernel (it fits a model to what the reader chose); on
the website it shows a recorded example.
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Callable, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt

__all__ = ["figure_to_png", "precomputed_explorer", "preference_widget"]


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


def preference_widget(completions: Sequence[str], recorded_ranking: Sequence[int], fit: Callable,
                      report: Callable, prompt: str = ""):
    """Rank completions yourself and fit a reward model to your ranking (Chapter 6's preference widget).

    One drop-down per completion sets its place (1 = best); the button calls ``fit(completions, [ranking])`` and
    shows ``report(model)``, a text. The widget opens with ``recorded_ranking`` already set and fitted, so the
    static website, where no kernel answers the button, shows that recorded example.

    Args:
        completions: the texts to rank (at least 2).
        recorded_ranking: the example ranking shown first: completion indices, best first (a permutation).
        fit: ``fit(completions, rankings) -> model``, e.g. :func:`solutions.reward_model.fit_reader_reward`.
        report: ``report(model) -> str``, what to show of the fitted model.
        prompt: shown above the completions.

    Returns:
        An ``ipywidgets.VBox``. While nbgrader grades (``NBGRADER_EXECUTION`` set) it only says it is not shown.

    Raises:
        ValueError: if ``recorded_ranking`` is not a permutation of the completions' indices.
    """
    completions = list(completions)
    recorded = [int(i) for i in recorded_ranking]
    if len(completions) < 2 or sorted(recorded) != list(range(len(completions))):
        raise ValueError(f"recorded_ranking must order all {len(completions)} completions (at least 2), best "
                         f"first; got {recorded_ranking!r}")
    if os.environ.get("NBGRADER_EXECUTION"):
        return widgets.VBox([widgets.HTML("(preference widget: not shown while grading)")])
    places = {index: place for place, index in enumerate(recorded, start=1)}
    style = {"description_width": "initial"}
    menus = [widgets.Dropdown(options=list(range(1, len(completions) + 1)), value=places[i],
                              description=f"{prompt} … {text}", style=style, layout=widgets.Layout(width="auto"))
             for i, text in enumerate(completions)]
    button = widgets.Button(description="fit a reward model to my ranking", layout=widgets.Layout(width="auto"))
    shown = widgets.HTML()

    def show(ranking: list[int], heading: str) -> None:
        text = report(fit(completions, [ranking]))
        shown.value = f"<b>{html.escape(heading)}</b><pre>{html.escape(text)}</pre>"

    def on_click(_button) -> None:
        chosen = [menu.value for menu in menus]
        if sorted(chosen) != list(range(1, len(completions) + 1)):
            repeated = sorted({p for p in chosen if chosen.count(p) > 1})
            shown.value = (f"<b>Give each completion its own place, 1 to {len(completions)}: places "
                           f"{repeated} are used more than once.</b>")
            return
        show(sorted(range(len(completions)), key=chosen.__getitem__), "Fitted to your ranking:")

    button.on_click(on_click)
    show(recorded, "Recorded example (a reader's ranking, set in the menus above):")
    return widgets.VBox([widgets.HTML("Give each completion a place, 1 = best:"), *menus, button, shown])
