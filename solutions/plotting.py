"""Figures shared by the chapters (matplotlib)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .envs.gridworlds import MOVES
from .envs.tabular import TabularMDP

__all__ = ["plot_convergence", "plot_grid_values", "plot_mean_band"]


def plot_grid_values(mdp: TabularMDP, V=None, policy=None, *, ax=None, title: str | None = None,
                     fmt: str = "{:.3f}", cmap: str = "RdYlGn", path=None, actions=None, norm=None):
    """Draw a grid-world: each square coloured by its value, with the value and the policy's arrow.

    Args:
        mdp: a TabularMDP with a ``layout`` (a :class:`~solutions.envs.GridLayout`).
        V: float array ``(S,)`` of state values, or None for a plain map with state names. A NaN value leaves
            its square blank.
        policy: int array ``(S,)`` of actions (drawn as arrows in non-terminal squares; a negative entry
            draws no arrow), or None.
        ax: the matplotlib Axes to draw on (default: a new figure).
        title: the Axes title.
        fmt: format of the value printed in each square.
        cmap: matplotlib colour map for the values.
        path: a sequence of states drawn as a line through their squares (e.g. a greedy path), or None.
        actions: bool array ``(S, A)``, or None: an arrow for every marked action of a state (for example all
            greedy actions, ties included), drawn like ``policy``'s. Give ``policy`` or ``actions``, not both.
        norm: a matplotlib ``Normalize`` for the colours (e.g. ``LogNorm`` for values spanning decades), or None
            for a linear scale symmetric about 0. ``ax.images[0]`` is the image, for a colour bar.

    Returns:
        The Axes.

    Raises:
        ValueError: if the MDP has no layout, ``V``/``policy`` do not have shape ``(S,)``, ``actions`` does not
            have shape ``(S, A)``, or both ``policy`` and ``actions`` are given.
    """
    layout = mdp.layout
    if layout is None:
        raise ValueError("this MDP has no grid layout to draw")
    S = mdp.n_states
    if V is not None and np.shape(V) != (S,):
        raise ValueError(f"V must have shape ({S},); got {np.shape(V)}")
    if policy is not None and np.shape(policy) != (S,):
        raise ValueError(f"policy must have shape ({S},); got {np.shape(policy)}")
    if actions is not None:
        if policy is not None:
            raise ValueError("give policy or actions, not both")
        if np.shape(actions) != (S, mdp.n_actions):
            raise ValueError(f"actions must have shape ({S}, {mdp.n_actions}); got {np.shape(actions)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(layout.shape[1] * 1.1, layout.shape[0] * 1.1))
    n_rows, n_cols = layout.shape
    grid = np.full(layout.shape, np.nan)
    if V is not None:
        for s, cell in enumerate(layout.cells):
            if cell is not None:
                grid[cell] = V[s]
        finite = grid[np.isfinite(grid)]  # NaN squares stay blank
        bound = max(np.abs(finite).max(), 1e-9) if finite.size else 1.0
        if norm is None:
            ax.imshow(grid, cmap=cmap, vmin=-bound, vmax=bound)
        else:
            ax.imshow(grid, cmap=cmap, norm=norm)
    else:
        ax.imshow(np.zeros(layout.shape), cmap="Greys", vmin=0, vmax=1)
    for r, c in layout.walls:
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, color="0.25"))
    for s, cell in enumerate(layout.cells):
        if cell is None:
            continue
        r, c = cell
        if s in layout.labels:
            text = layout.labels[s]
        elif V is not None:
            text = "" if np.isnan(V[s]) else fmt.format(V[s])
        else:
            text = mdp.state_names[s]
        if actions is not None:
            arrows = [int(a) for a in np.flatnonzero(actions[s])]
        else:
            arrows = [int(policy[s])] if policy is not None and policy[s] >= 0 else []
        if mdp.terminal[s] or s in layout.labels:
            arrows = []
        ax.text(c, r + (0.28 if arrows else 0.0), text, ha="center", va="center", fontsize=9)
        centre = r - 0.12 if text else r  # arrows above the text, or in the middle of a square without one
        for a in arrows:
            dr, dc = MOVES[a]
            ax.annotate("", xy=(c + 0.3 * dc, centre + 0.3 * dr), xytext=(c, centre),
                        arrowprops=dict(arrowstyle="->", lw=1.5))
        if mdp.terminal[s]:
            ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, hatch="//", color="0.5"))
    if path is not None and len(path) > 1:
        points = np.array([layout.cells[s] for s in path if layout.cells[s] is not None], dtype=float)
        ax.plot(points[:, 1], points[:, 0], color="tab:blue", lw=2.5, alpha=0.7)
    ax.set_xticks([])  # no major ticks: matplotlib drops minor ticks that coincide with major ones
    ax.set_yticks([])
    ax.set_xticks(np.arange(-0.5, n_cols), minor=True)
    ax.set_yticks(np.arange(-0.5, n_rows), minor=True)
    ax.grid(which="minor", color="k", linewidth=1)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_convergence(deltas, *, ax=None, label: str | None = None, title: str | None = None):
    """Plot max_s |v_{k+1}(s) - v_k(s)| against the sweep k on a log scale.

    Args:
        deltas: 1-D sequence of the largest value change of each sweep (floats >= 0).
        ax: the matplotlib Axes (default: a new figure).
        label: legend label of the curve.
        title: the Axes title.

    Returns:
        The Axes.
    """
    deltas = np.asarray(deltas, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    ax.semilogy(np.arange(1, len(deltas) + 1), np.maximum(deltas, 1e-16), label=label)
    ax.set_xlabel("sweep k")
    ax.set_ylabel(r"$\max_s |v_{k}(s) - v_{k-1}(s)|$")
    if title:
        ax.set_title(title, fontsize=10)
    if label:
        ax.legend()
    return ax


def plot_mean_band(ax, x, runs, *, label: str | None = None, z: float = 1.96, **kwargs):
    """Plot the mean of ``runs`` over axis 0 with a band of +- ``z`` standard errors around it.

    With ``z = 1.96`` the band is an approximate 95% confidence interval for the mean curve at each x (normal
    approximation; with few runs it is too narrow). The standard error is the sample standard deviation over
    runs (``ddof=1``) divided by the square root of the number of runs.

    Args:
        ax: the matplotlib Axes.
        x: 1-D sequence ``(T,)`` of x-coordinates.
        runs: array ``(n_runs, T)``, one learning curve per row (n_runs >= 2).
        label: legend label of the mean curve.
        z: half-width of the band in standard errors (> 0).
        **kwargs: passed to ``ax.plot`` for the mean curve (the band takes its colour).

    Returns:
        ``(mean, half_width)``, float arrays ``(T,)``.

    Raises:
        ValueError: if ``runs`` is not 2-d with at least two rows and ``len(x)`` columns, or ``z`` <= 0.
    """
    runs = np.asarray(runs, dtype=np.float64)
    if runs.ndim != 2 or runs.shape[0] < 2 or runs.shape[1] != len(x):
        raise ValueError(f"runs must have shape (n_runs >= 2, {len(x)}); got {runs.shape}")
    if not z > 0:
        raise ValueError(f"z must be positive; got {z}")
    mean = runs.mean(axis=0)
    half_width = z * runs.std(axis=0, ddof=1) / np.sqrt(runs.shape[0])
    (line,) = ax.plot(x, mean, label=label, **kwargs)
    ax.fill_between(x, mean - half_width, mean + half_width, color=line.get_color(), alpha=0.2, lw=0)
    return mean, half_width
