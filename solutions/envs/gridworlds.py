"""The grid-worlds of Chapter 1, built as :class:`~solutions.envs.tabular.TabularMDP` models.

* :func:`penguin_on_ice` -- the 4x4 Markov reward process of a penguin sliding on ice (after Prince 2023,
  *Understanding Deep Learning*, ch. 19).
* :func:`aima_4x3` -- the 4x3 world of Russell & Norvig, *Artificial Intelligence: A Modern Approach*
  (4th ed., Section 17.1).
* :func:`sutton_barto_4x4` -- the 4x4 grid-world of Sutton & Barto (2018), Example 4.1.
* :func:`dyna_maze` -- the 6x9 maze of Sutton & Barto (2018), Example 8.1 (Chapter 2).

Grid conventions: rows are numbered from the top (row 0 is the top row), columns from the left. The four
moves are, in this order, up, right, down, left (``MOVES``).
"""

from __future__ import annotations

import numpy as np

import gymnasium as gym

from .tabular import GridLayout, TabularMDP, from_toy_text

__all__ = ["DYNA_MAZE_WALLS", "MOVES", "MOVE_NAMES", "aima_4x3", "blocking_maze", "cliff_walking", "dyna_maze",
           "penguin_on_ice", "shortcut_maze", "sutton_barto_4x4"]

MOVE_NAMES = ("up", "right", "down", "left")
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # (d_row, d_col) of each move


def _move(cell: tuple[int, int], move: int, shape: tuple[int, int], walls: set) -> tuple[int, int]:
    """The cell reached by ``move`` from ``cell``; bumping into the edge or a wall leaves it unchanged."""
    r, c = cell[0] + MOVES[move][0], cell[1] + MOVES[move][1]
    if not (0 <= r < shape[0] and 0 <= c < shape[1]) or (r, c) in walls:
        return cell
    return (r, c)


def penguin_on_ice(gamma: float = 0.9, fish: tuple[int, ...] = (9, 11)) -> TabularMDP:
    """The penguin-on-ice Markov reward process on a 4x4 grid (after Prince 2023, ch. 19).

    Squares are numbered 1 to 16 row by row from the top-left; state ``s`` is square ``s + 1``. From each
    square the penguin slides to each neighbouring square (up, down, left, right, staying on the grid) with
    equal probability. It collects reward 1 for each step it starts on a square with a fish, so the reward
    R_{t+1} depends on S_t only. There are no actions to choose: the MRP is an MDP with a single action.

    Args:
        gamma: discount factor in ``[0, 1]``.
        fish: the squares (numbered 1..16) with a fish.

    Returns:
        TabularMDP with S = 16, A = 1; ``P[:, 0, :]`` is the 16x16 transition matrix.

    Raises:
        ValueError: if a fish square is not in 1..16, or gamma is outside ``[0, 1]``.
    """
    shape = (4, 4)
    if any(not 1 <= f <= 16 for f in fish):
        raise ValueError(f"fish squares must be numbered 1..16; got {fish}")
    P = np.zeros((16, 1, 16))
    R = np.zeros((16, 1))
    for s in range(16):
        cell = divmod(s, 4)
        neighbours = {_move(cell, m, shape, set()) for m in range(4)} - {cell}
        for r, c in neighbours:
            P[s, 0, 4 * r + c] = 1.0 / len(neighbours)
        R[s, 0] = 1.0 if s + 1 in fish else 0.0
    layout = GridLayout(shape, tuple(divmod(s, 4) for s in range(16)))
    initial = np.eye(16)[0]
    return TabularMDP(
        P, R, gamma, initial=initial, state_names=[str(s + 1) for s in range(16)],
        action_names=["slide"], layout=layout,
    )


def aima_4x3(step_reward: float = -0.04, gamma: float = 1.0, p_intended: float = 0.8) -> TabularMDP:
    """The 4x3 world of Russell & Norvig (AIMA, 4th ed., Section 17.1, Figure 17.1).

    Eleven squares, a wall at (2, 2), exits at (4, 3) worth +1 and (4, 2) worth -1 (AIMA coordinates:
    (column, row) with (1, 1) at the bottom left). A move goes the intended way with probability
    ``p_intended`` and at right angles to it with probability ``(1 - p_intended) / 2`` each; bumping into the
    edge or the wall leaves the agent where it is. Every step from a non-exit square pays ``step_reward``.

    The exits are modelled as in the value-iteration literature: from an exit square every action pays the
    exit's reward (+1 or -1) and moves to an absorbing terminal state ``end``. Then V(exit) = +1 or -1 and
    the values of the other squares equal the utilities of AIMA Figure 17.3 for gamma = 1.

    States are numbered row by row from the top: 0..3 = (1,3)..(4,3), 4..6 = (1,2), (3,2), (4,2),
    7..10 = (1,1)..(4,1), and 11 = ``end``. Actions are ``MOVE_NAMES`` (up, right, down, left).

    Args:
        step_reward: reward of each step from a non-exit square (AIMA: -0.04).
        gamma: discount factor in ``[0, 1]`` (AIMA: 1).
        p_intended: probability that a move goes the intended way.

    Returns:
        TabularMDP with S = 12, A = 4 and a ``GridLayout`` of shape (3, 4).

    Raises:
        ValueError: if ``p_intended`` is outside ``[0, 1]`` or gamma is outside ``[0, 1]``.
    """
    if not 0.0 <= p_intended <= 1.0:
        raise ValueError(f"p_intended must lie in [0, 1]; got {p_intended}")
    shape, walls = (3, 4), {(1, 1)}
    cells = [(r, c) for r in range(3) for c in range(4) if (r, c) not in walls]
    index = {cell: s for s, cell in enumerate(cells)}
    exits = {(0, 3): 1.0, (1, 3): -1.0}
    end = len(cells)
    S, A = len(cells) + 1, 4
    P = np.zeros((S, A, S))
    R = np.zeros((S, A))
    p_side = (1.0 - p_intended) / 2.0
    for cell, s in index.items():
        for a in range(A):
            if cell in exits:
                P[s, a, end] = 1.0
                R[s, a] = exits[cell]
                continue
            R[s, a] = step_reward
            for move, prob in ((a, p_intended), ((a + 1) % 4, p_side), ((a + 3) % 4, p_side)):
                P[s, a, index[_move(cell, move, shape, walls)]] += prob
    P[end, :, end] = 1.0
    terminal = np.zeros(S, dtype=bool)
    terminal[end] = True
    names = [f"({c + 1},{3 - r})" for r, c in cells] + ["end"]
    layout = GridLayout(shape, tuple(cells) + (None,), walls=tuple(walls),
                        labels={index[(0, 3)]: "+1", index[(1, 3)]: "−1"})
    initial = np.eye(S)[index[(2, 0)]]
    return TabularMDP(P, R, gamma, terminal=terminal, initial=initial, state_names=names,
                      action_names=MOVE_NAMES, layout=layout)


def sutton_barto_4x4(gamma: float = 1.0, reward: float = -1.0) -> TabularMDP:
    """The 4x4 grid-world of Sutton & Barto (2018), Example 4.1 (Figure 4.1).

    States 0..15 are the squares row by row from the top-left; squares 0 and 15 are terminal. The four moves
    (up, right, down, left) are deterministic; a move off the grid leaves the state unchanged. Every
    transition pays ``reward`` (-1 in the book) until a terminal state is reached.

    Args:
        gamma: discount factor in ``[0, 1]`` (the book uses 1).
        reward: reward of every transition from a non-terminal state.

    Returns:
        TabularMDP with S = 16, A = 4.

    Raises:
        ValueError: if gamma is outside ``[0, 1]``.
    """
    shape = (4, 4)
    S, A = 16, 4
    terminal = np.zeros(S, dtype=bool)
    terminal[[0, 15]] = True
    P = np.zeros((S, A, S))
    R = np.zeros((S, A))
    for s in range(S):
        for a in range(A):
            if terminal[s]:
                P[s, a, s] = 1.0
                continue
            r, c = _move(divmod(s, 4), a, shape, set())
            P[s, a, 4 * r + c] = 1.0
            R[s, a] = reward
    layout = GridLayout(shape, tuple(divmod(s, 4) for s in range(S)))
    return TabularMDP(P, R, gamma, terminal=terminal, action_names=MOVE_NAMES, layout=layout)


#: Blocked squares of the Dyna maze (Sutton & Barto 2018, Example 8.1), as (row, col) from the top left.
DYNA_MAZE_WALLS = ((1, 2), (2, 2), (3, 2), (4, 5), (0, 7), (1, 7), (2, 7))


def dyna_maze(gamma: float = 0.95, start: tuple[int, int] = (2, 0), goal: tuple[int, int] = (0, 8),
              walls: tuple[tuple[int, int], ...] = DYNA_MAZE_WALLS, shape: tuple[int, int] = (6, 9),
              squares: tuple[tuple[int, int], ...] | None = None) -> TabularMDP:
    """The Dyna maze of Sutton & Barto (2018), Example 8.1 (Figure 8.2): a 6x9 grid with seven blocked squares.

    Moves (up, right, down, left) are deterministic; a move into a wall or off the grid leaves the agent in
    place. Reward is 0 on every transition except the one into the goal, which pays +1; the goal is terminal.
    Every episode starts at ``start``. The shortest path from the default start to the goal takes 14 steps.

    States are the open squares numbered row by row from the top left (``layout.cells[s]`` gives
    ``(row, col)``); ``state_names`` are ``"(row,col)"``. ``squares`` replaces that list, so that mazes whose
    walls change (:func:`blocking_maze`, :func:`shortcut_maze`) number their states the same way before and
    after the change: a blocked square may be a state; no move enters it, and moves out of it work as from an
    open square (an agent standing there when a wall appears can step off).

    Args:
        gamma: discount factor in ``[0, 1]`` (the book uses 0.95).
        start, goal: ``(row, col)`` of the start and the goal square.
        walls: ``(row, col)`` of the blocked squares.
        shape: ``(n_rows, n_cols)`` of the grid.
        squares: ``(row, col)`` of the squares that are states, in state order; default: every open square.

    Returns:
        TabularMDP with S = number of open squares (or ``len(squares)``), A = 4.

    Raises:
        ValueError: if the start or the goal is blocked or off the grid, if ``squares`` misses an open square,
            repeats one or leaves the grid, or if gamma is outside ``[0, 1]``.
    """
    walls = set(walls)
    for name, cell in (("start", start), ("goal", goal)):
        if cell in walls or not (0 <= cell[0] < shape[0] and 0 <= cell[1] < shape[1]):
            raise ValueError(f"the {name} square {cell} is blocked or off the {shape} grid")
    open_squares = [(r, c) for r in range(shape[0]) for c in range(shape[1]) if (r, c) not in walls]
    if squares is None:
        cells = open_squares
    else:
        cells = [tuple(cell) for cell in squares]
        missing = set(open_squares) - set(cells)
        if missing or len(set(cells)) != len(cells):
            raise ValueError(f"squares must list every open square once; missing {sorted(missing)}, "
                             f"{len(cells) - len(set(cells))} repeated")
        if any(not (0 <= r < shape[0] and 0 <= c < shape[1]) for r, c in cells):
            raise ValueError(f"squares must lie on the {shape} grid")
    index = {cell: s for s, cell in enumerate(cells)}
    S, A = len(cells), 4
    P = np.zeros((S, A, S))
    R = np.zeros((S, A))
    terminal = np.zeros(S, dtype=bool)
    terminal[index[goal]] = True
    for cell, s in index.items():
        for a in range(A):
            if cell == goal:
                P[s, a, s] = 1.0
                continue
            reached = _move(cell, a, shape, walls)
            P[s, a, index[reached]] = 1.0
            R[s, a] = 1.0 if reached == goal else 0.0
    names = [f"({r},{c})" for r, c in cells]
    layout = GridLayout(shape, tuple(cells), walls=tuple(sorted(walls)),
                        labels={index[start]: "S", index[goal]: "G"})
    return TabularMDP(P, R, gamma, terminal=terminal, initial=np.eye(S)[index[start]], state_names=names,
                      action_names=MOVE_NAMES, layout=layout)


def _changing_maze(walls_before, walls_after, gamma: float) -> tuple[TabularMDP, TabularMDP]:
    """The two layouts of a 6x9 maze whose wall changes, as MDPs over the same states (start (5,3), goal (0,8))."""
    shape = (6, 9)
    squares = tuple((r, c) for r in range(shape[0]) for c in range(shape[1])
                    if (r, c) not in walls_before or (r, c) not in walls_after)
    return tuple(dyna_maze(gamma, start=(5, 3), goal=(0, 8), walls=tuple(sorted(walls)), squares=squares)
                 for walls in (walls_before, walls_after))


def blocking_maze(gamma: float = 0.95) -> tuple[TabularMDP, TabularMDP]:
    """The blocking maze of Sutton & Barto (2018), Example 8.2 (Figure 8.4), before and after its change.

    A 6x9 grid, start (5, 3) on the bottom row, goal (0, 8) in the top right corner, rewards as in
    :func:`dyna_maze`. A wall fills row 3 except one gap: at the right end (column 8) before the change, so the
    shortest path takes 10 steps, and at the left end (column 0) after it, so the old path is blocked and the
    shortest one takes 16 steps.

    Returns:
        ``(before, after)``: two TabularMDPs with the same 47 states (the squares open in either layout, row by
        row) and 4 actions.
    """
    return _changing_maze({(3, c) for c in range(0, 8)}, {(3, c) for c in range(1, 9)}, gamma)


def shortcut_maze(gamma: float = 0.95) -> tuple[TabularMDP, TabularMDP]:
    """The shortcut maze of Sutton & Barto (2018), Example 8.3 (Figure 8.5), before and after its change.

    As :func:`blocking_maze`, but the wall's only gap is at the left end (column 0; shortest path 16 steps)
    before the change, and a second gap opens at the right end (column 8) after it: a shortcut of 10 steps
    that the old path does not pass.

    Returns:
        ``(before, after)``: two TabularMDPs with the same 47 states and 4 actions.
    """
    return _changing_maze({(3, c) for c in range(1, 9)}, {(3, c) for c in range(1, 8)}, gamma)


def cliff_walking(gamma: float = 1.0) -> TabularMDP:
    """Gymnasium's CliffWalking-v1 as a TabularMDP: Sutton & Barto (2018), Example 6.6.

    A 4x12 grid; the start is the bottom-left square (state 36), the goal the bottom-right one (state 47,
    terminal), and the ten squares between them are the cliff. Every move costs -1; stepping into the cliff
    costs -100 and sends the agent back to the start (the episode goes on). States are numbered row by row from
    the top left, ``s = 12 * row + col``, as in Gymnasium; actions are up, right, down, left. The model comes
    from the environment's own ``P`` table (:func:`~solutions.envs.tabular.from_toy_text`); the cliff squares
    are states the agent never occupies, drawn dark.

    Args:
        gamma: discount factor (the book's example is undiscounted).
    """
    env = gym.make("CliffWalking-v1")
    P = env.unwrapped.P
    env.close()
    shape = (4, 12)
    cliff = tuple((3, c) for c in range(1, 11))
    cells = tuple(divmod(s, 12) for s in range(48))
    layout = GridLayout(shape, cells, walls=cliff, labels={36: "S", 47: "G"})
    return from_toy_text(P, gamma, initial=np.eye(48)[36], state_names=[f"({r},{c})" for r, c in cells],
                         action_names=MOVE_NAMES, layout=layout)
