"""Deep Q-networks (Chapter 3, last part): Q-learning with a neural network, a replay buffer and a target network.

Mnih et al. (2015), "Human-level control through deep reinforcement learning", Nature 518: the action values
Q(s, a; w) come from a network with weights w; each environment step stores its transition in a replay buffer,
and each gradient step fits Q(s, a; w) on a random minibatch of stored transitions to the target

    y = r + gamma * (1 - terminated) * max_a' Q(s', a'; w^-),

where w^- are the weights of a second network, the *target network*, that follows w slowly. Mnih et al. copy w
into w^- every C = 10,000 gradient steps. By default we use the soft update of Lillicrap et al. (2016) instead:
after every environment step, w^- <- (1 - tau) w^- + tau w with tau = 0.005 (:func:`soft_update`);
``DQNConfig(tau=1.0, target_update=C)`` gives the paper's periodic copy every C environment steps. Replay breaks
up the correlation between consecutive samples; the slowly moving target keeps the regression target from
moving with every gradient step. We use the Huber loss of the paper's error clipping and Adam (Kingma & Ba, 2015).

The chapter trains it on Gymnasium's CartPole-v1 (Barto, Sutton & Anderson, 1983): four state variables, two
actions, reward +1 per step, episodes cut at 500 steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .envs.evaluation import mean_episode_return
from .progress import show_progress
from .threads import single_threaded

__all__ = ["DQNConfig", "DQNResult", "QNetwork", "ReplayBuffer", "dqn_loss", "evaluate_policy", "soft_update",
           "train_dqn"]


class QNetwork(nn.Module):
    """Q(s, .; w): a multilayer perceptron from a state to one value per action.

    Args:
        state_dim: length of the state vector.
        n_actions: number of actions.
        hidden: width of each of the two hidden ReLU layers.

    Input float32 ``(B, state_dim)``; output float32 ``(B, n_actions)``.
    """

    def __init__(self, state_dim: int, n_actions: int, hidden: int = 128):
        super().__init__()
        self.state_dim, self.n_actions = state_dim, n_actions
        self.layers = nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                    nn.Linear(hidden, n_actions))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.layers(states)


class ReplayBuffer:
    """A fixed-size memory of transitions; the oldest are overwritten first (a ring buffer).

    Args:
        capacity: the number of transitions kept.
        state_dim: length of the state vector.
    """

    def __init__(self, capacity: int, state_dim: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1; got {capacity}")
        self.capacity = capacity
        self.states = np.zeros((capacity, state_dim), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.next_states = np.zeros((capacity, state_dim), dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.size = 0
        self._next = 0

    def __len__(self) -> int:
        return self.size

    def add(self, state, action: int, reward: float, next_state, terminated: bool) -> None:
        """Store one transition. ``terminated`` is True only when ``next_state`` is terminal -- not when the
        episode was merely cut by a time limit, after which the state still has a value."""
        i = self._next
        self.states[i], self.actions[i], self.rewards[i] = state, action, reward
        self.next_states[i], self.terminated[i] = next_state, float(terminated)
        self._next = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        """A minibatch drawn uniformly with replacement: tensors ``(states (B, d) float32, actions (B,) int64,
        rewards (B,) float32, next_states (B, d) float32, terminated (B,) float32)``."""
        if self.size == 0:
            raise ValueError("the replay buffer is empty")
        i = rng.integers(self.size, size=batch_size)
        return (torch.from_numpy(self.states[i]), torch.from_numpy(self.actions[i]),
                torch.from_numpy(self.rewards[i]), torch.from_numpy(self.next_states[i]),
                torch.from_numpy(self.terminated[i]))


def dqn_loss(q_network: nn.Module, target_network: nn.Module, states: torch.Tensor, actions: torch.Tensor,
             rewards: torch.Tensor, next_states: torch.Tensor, terminated: torch.Tensor,
             gamma: float) -> torch.Tensor:
    """The DQN loss on a minibatch (Mnih et al. 2015, Methods, "Training algorithm for deep Q-networks").

    The mean Huber loss (``torch.nn.functional.smooth_l1_loss``) between Q(s_i, a_i; w) from ``q_network``
    and the targets y_i = r_i + gamma * (1 - terminated_i) * max_a' Q(s'_i, a'; w^-) from ``target_network``.
    The targets are constants: no gradient flows through them.

    Args:
        q_network, target_network: modules mapping float32 ``(B, d)`` states to ``(B, A)`` values.
        states, next_states: float32 ``(B, d)``.
        actions: int64 ``(B,)``.
        rewards: float32 ``(B,)``.
        terminated: float32 ``(B,)``, 1.0 where ``next_states`` is terminal.
        gamma: discount factor in ``[0, 1]``.

    Returns:
        A scalar tensor that back-propagates into ``q_network`` only.
    """
    q = q_network(states).gather(1, actions.unsqueeze(1)).squeeze(1)
    with torch.no_grad():
        target = rewards + gamma * (1.0 - terminated) * target_network(next_states).max(dim=1).values
    return nn.functional.smooth_l1_loss(q, target)


def soft_update(target_network: nn.Module, q_network: nn.Module, tau: float) -> None:
    """Move the target network's weights a fraction ``tau`` towards the online ones, in place (Lillicrap et al.
    2016, Algorithm 1): w^- <- (1 - tau) w^- + tau w, parameter by parameter, without recording gradients.

    ``tau = 1`` copies w into w^- (the periodic update of Mnih et al. 2015).

    Args:
        target_network: the network with weights w^-, updated in place.
        q_network: the online network with weights w (same architecture).
        tau: the fraction, in ``(0, 1]``.

    Raises:
        ValueError: if ``tau`` is outside ``(0, 1]`` or the networks' parameters differ in number or shape.
    """
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must lie in (0, 1]; got {tau}")
    target_params, online_params = list(target_network.parameters()), list(q_network.parameters())
    if [p.shape for p in target_params] != [p.shape for p in online_params]:
        raise ValueError("the target network and the online network must have parameters of the same shapes")
    with torch.no_grad():
        for target_param, param in zip(target_params, online_params):
            target_param.lerp_(param, tau)  # target_param + tau * (param - target_param)


def evaluate_policy(q_network: nn.Module, n_episodes: int = 20, seed: int = 0,
                    env_id: str = "CartPole-v1") -> float:
    """Mean undiscounted return of the greedy policy of ``q_network`` over ``n_episodes`` episodes.

    The episodes run side by side in a Gymnasium vector environment, seeded with ``seed``; each one counts until
    it first ends (terminated or truncated).
    """
    return mean_episode_return(lambda states: q_network(states).argmax(dim=1).numpy(), n_episodes, seed, env_id)


@dataclass
class DQNConfig:
    """Hyperparameters of :func:`train_dqn` (our choices for CartPole on a CPU; see Chapter 3)."""

    n_steps: int = 50_000  #: environment steps of training
    gamma: float = 0.99
    learning_rate: float = 1e-3  #: Adam's step size
    batch_size: int = 64
    buffer_size: int = 50_000
    learning_starts: int = 1_000  #: steps of random play before the first gradient step
    train_every: int = 2  #: environment steps between training phases
    gradient_steps: int = 1  #: gradient steps in each training phase
    target_update: int = 1  #: environment steps between updates of the target network's weights w^-
    tau: float = 0.005  #: each update sets w^- <- (1 - tau) w^- + tau w (1: a plain copy, as in Mnih et al.)
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_steps: int = 10_000  #: epsilon falls linearly from start to end over these steps
    hidden: int = 128
    eval_every: int = 2_500  #: environment steps between evaluations
    eval_episodes: int = 20


@dataclass
class DQNResult:
    """What :func:`train_dqn` returns."""

    q_network: QNetwork
    eval_steps: list[int] = field(default_factory=list)  #: steps at which the greedy policy was evaluated
    eval_returns: list[float] = field(default_factory=list)  #: its mean return over the evaluation episodes
    episode_returns: list[float] = field(default_factory=list)  #: return of each training episode
    episode_ends: list[int] = field(default_factory=list)  #: the step at which each training episode ended

    def first_step_reaching(self, level: float) -> int | None:
        """The first evaluation step whose mean return is at least ``level``, or None."""
        return next((s for s, r in zip(self.eval_steps, self.eval_returns) if r >= level), None)


@single_threaded()
def train_dqn(seed: int, config: DQNConfig | None = None, env_id: str = "CartPole-v1",
              progress: bool | None = None) -> DQNResult:
    """Train a DQN (Mnih et al. 2015) with epsilon-greedy exploration and evaluate it as it learns.

    Args:
        seed: seeds torch (network initialisation), numpy (exploration, minibatches) and the environment.
        config: hyperparameters (default :class:`DQNConfig`).
        env_id: a Gymnasium environment with a vector state and discrete actions.
        progress: show a tqdm progress bar (default: :func:`~solutions.progress.show_progress`).

    Returns:
        A :class:`DQNResult`; evaluations (``config.eval_episodes`` greedy episodes with their own seeds) every
        ``config.eval_every`` steps.
    """
    config = config or DQNConfig()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = gym.make(env_id)
    state_dim, n_actions = env.observation_space.shape[0], int(env.action_space.n)
    q_network = QNetwork(state_dim, n_actions, config.hidden)
    target_network = QNetwork(state_dim, n_actions, config.hidden)
    target_network.load_state_dict(q_network.state_dict())
    optimizer = torch.optim.Adam(q_network.parameters(), lr=config.learning_rate, foreach=True)
    buffer = ReplayBuffer(config.buffer_size, state_dim)
    result = DQNResult(q_network)
    state, _ = env.reset(seed=seed)
    episode_return = 0.0
    for step in tqdm(range(1, config.n_steps + 1), desc=f"DQN seed {seed}", disable=not show_progress(progress),
                     mininterval=1.0):
        fraction = min(1.0, (step - 1) / config.epsilon_decay_steps)
        epsilon = config.epsilon_start + fraction * (config.epsilon_end - config.epsilon_start)
        if rng.random() < epsilon:
            action = int(rng.integers(n_actions))
        else:
            with torch.no_grad():
                action = int(q_network(torch.as_tensor(state, dtype=torch.float32)[None]).argmax())
        next_state, reward, terminated, truncated, _ = env.step(action)
        buffer.add(state, action, reward, next_state, terminated)
        episode_return += reward
        state = next_state
        if terminated or truncated:
            result.episode_returns.append(episode_return)
            result.episode_ends.append(step)
            state, _ = env.reset()
            episode_return = 0.0
        if step > config.learning_starts and step % config.train_every == 0:
            for _ in range(config.gradient_steps):
                loss = dqn_loss(q_network, target_network, *buffer.sample(config.batch_size, rng), config.gamma)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        if step % config.target_update == 0:
            soft_update(target_network, q_network, config.tau)
        if step % config.eval_every == 0:
            result.eval_steps.append(step)
            result.eval_returns.append(evaluate_policy(q_network, config.eval_episodes, seed=10_000 + step,
                                                       env_id=env_id))
    env.close()
    return result
