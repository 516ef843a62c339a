"""Chapter 4 answers with the mistakes students make, written the way a student might write them.

Each entry of ``BUGGY`` is ``(exercise, function, words the check's output must contain)``: the hint that names the
mistake, or a message stating what is wrong with the output, or "Smallest failing case" for a mistake the check has
no diagnosis for (it shows that case's inputs and values instead of guessing).
"""

import numpy as np
import torch

# ---------------------------------------------------------------------------------------------------- reward-to-go


def rtg_across_episodes(rewards, gamma, episode_ends):
    G = np.zeros(len(rewards))
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        G[t] = running
    return G


def rtg_discounted_from_the_start(rewards, gamma, episode_ends):
    G = np.zeros(len(rewards))
    start = 0
    for t in range(len(rewards)):
        if t > 0 and episode_ends[t - 1]:
            start = t
        end = t
        while not episode_ends[end]:
            end += 1
        G[t] = sum(gamma ** (k - start) * rewards[k] for k in range(t, end + 1))
    return G


def rtg_whole_episode(rewards, gamma, episode_ends):
    G = np.zeros(len(rewards))
    start = 0
    for t in range(len(rewards)):
        if episode_ends[t]:
            total = sum(gamma ** i * r for i, r in enumerate(rewards[start:t + 1]))
            G[start:t + 1] = total
            start = t + 1
    return G


def rtg_running_sum_forwards(rewards, gamma, episode_ends):
    G = np.zeros(len(rewards))
    running = 0.0
    for t in range(len(rewards)):
        running = rewards[t] + gamma * running
        G[t] = running
        if episode_ends[t]:
            running = 0.0
    return G


def rtg_discounting_every_reward(rewards, gamma, episode_ends):
    G = np.zeros(len(rewards))
    running = 0.0
    for t in reversed(range(len(rewards))):
        if episode_ends[t]:
            running = 0.0
        running = gamma * (rewards[t] + running)
        G[t] = running
    return G


def rtg_reset_after_the_step(rewards, gamma, episode_ends):
    G = np.zeros(len(rewards))
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        G[t] = running
        if episode_ends[t]:
            running = 0.0
    return G


# ------------------------------------------------------------------------------ gradient of log softmax policy


def grad_log_pi_features_only(theta, x, a):
    return np.array(x[a], dtype=float)


def grad_log_pi_plain_average(theta, x, a):
    return x[a] - np.mean(x, axis=0)


def grad_log_pi_of_pi(theta, x, a):
    h = x @ theta
    pi = np.exp(h - h.max()) / np.exp(h - h.max()).sum()
    return pi[a] * (x[a] - pi @ x)


def grad_log_pi_overflowing(theta, x, a):
    pi = np.exp(x @ theta) / np.sum(np.exp(x @ theta))
    return x[a] - pi @ x


# ---------------------------------------------------------------------------------------- short corridor value


def corridor_without_the_switch(p_right, gamma=1.0):
    p = p_right
    A = np.array([[1 - gamma * (1 - p), -gamma * p, 0.0],
                  [-gamma * (1 - p), 1.0, -gamma * p],
                  [0.0, -gamma * (1 - p), 1.0]])
    return float(np.linalg.solve(A, -np.ones(3))[0])


def corridor_counting_steps(p_right, gamma=1.0):
    p = p_right
    A = np.array([[1 - gamma * (1 - p), -gamma * p, 0.0],
                  [-gamma * p, 1.0, -gamma * (1 - p)],
                  [0.0, -gamma * (1 - p), 1.0]])
    return float(np.linalg.solve(A, np.ones(3))[0])


def corridor_value_of_the_middle(p_right, gamma=1.0):
    p = p_right
    A = np.array([[1 - gamma * (1 - p), -gamma * p, 0.0],
                  [-gamma * p, 1.0, -gamma * (1 - p)],
                  [0.0, -gamma * (1 - p), 1.0]])
    return float(np.linalg.solve(A, -np.ones(3))[1])


# -------------------------------------------------------------------------------------------------- REINFORCE loss


def reinforce_loss_ascending(log_probs, returns, n_episodes):
    return (log_probs * returns.detach()).sum() / n_episodes


def reinforce_loss_mean_over_steps(log_probs, returns, n_episodes):
    return -(log_probs * returns.detach()).mean()


def reinforce_loss_not_detached(log_probs, returns, n_episodes):
    return -(log_probs * returns).sum() / n_episodes


def reinforce_loss_as_a_number(log_probs, returns, n_episodes):
    return -float((log_probs * returns).sum()) / n_episodes


# ----------------------------------------------------------------------------------- advantages and value loss


def advantages_reversed(returns, values):
    return (values - returns).detach(), ((values - returns) ** 2).mean()


def advantages_not_detached(returns, values):
    return returns - values, ((values - returns) ** 2).mean()


def value_loss_halved(returns, values):
    return returns - values.detach(), 0.5 * ((values - returns) ** 2).mean()


def value_loss_detached(returns, values):
    advantages = returns - values.detach()
    return advantages, (advantages ** 2).mean()


# ------------------------------------------------------------------------------------ sequence log-probabilities


def sequence_log_probs_unshifted(logits, tokens, completion_mask):
    log_p = torch.log_softmax(logits, dim=-1).gather(2, tokens.unsqueeze(-1)).squeeze(-1)
    return (log_p * completion_mask).sum(dim=1)


def sequence_log_probs_with_the_prompt(logits, tokens, completion_mask):
    log_p = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (log_p * (tokens[:, 1:] != 0)).sum(dim=1)


def sequence_log_probs_from_logits(logits, tokens, completion_mask):
    picked = logits[:, :-1].gather(2, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (picked * completion_mask[:, 1:]).sum(dim=1)


def sequence_log_probs_averaged(logits, tokens, completion_mask):
    log_p = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = completion_mask[:, 1:].float()
    return (log_p * mask).sum(dim=1) / mask.sum(dim=1)


# ------------------------------------------------------------------------------------ REINFORCE for sequences


def sequence_loss_without_baseline(seq_log_probs, rewards):
    return -(rewards.detach() * seq_log_probs).mean()


def sequence_loss_ascending(seq_log_probs, rewards):
    advantages = (rewards - rewards.mean()).detach()
    return (advantages * seq_log_probs).mean()


def sequence_loss_normalised(seq_log_probs, rewards):
    r = rewards.detach()
    return -((r - r.mean()) / (r.std() + 1e-6) * seq_log_probs).mean()


def sequence_loss_not_detached(seq_log_probs, rewards):
    return -((rewards - rewards.mean()) * seq_log_probs).mean()


BUGGY = [
    ("reward_to_go", rtg_across_episodes, "restart the sum at each episode's end"),
    ("reward_to_go", rtg_discounted_from_the_start, "discount from time t"),
    ("reward_to_go", rtg_whole_episode, "the return of the whole episode"),
    ("reward_to_go", rtg_running_sum_forwards, "*to the end* of the episode"),
    ("reward_to_go", rtg_discounting_every_reward, "the first reward is not discounted"),
    ("reward_to_go", rtg_reset_after_the_step, "is True on the *last* step of an episode"),
    ("grad_log_softmax_policy", grad_log_pi_features_only, "subtract the features the policy expects"),
    ("grad_log_softmax_policy", grad_log_pi_plain_average, "with the policy's probabilities"),
    ("grad_log_softmax_policy", grad_log_pi_of_pi, "that is the gradient of pi(a|s)"),
    ("grad_log_softmax_policy", grad_log_pi_overflowing, "Smallest failing case"),
    ("short_corridor_value", corridor_without_the_switch, "the actions are switched"),
    ("short_corridor_value", corridor_counting_steps, "J is negative"),
    ("short_corridor_value", corridor_value_of_the_middle, "the value of the start state"),
    ("reinforce_loss", reinforce_loss_ascending, "minimise the *negative*"),
    ("reinforce_loss", reinforce_loss_mean_over_steps, "not by the number of steps"),
    ("reinforce_loss", reinforce_loss_not_detached, "detach the returns"),
    ("reinforce_loss", reinforce_loss_as_a_number, "as a torch tensor"),
    ("advantages_and_value_loss", advantages_reversed, "G_t - V(S_t)"),
    ("advantages_and_value_loss", advantages_not_detached, "detach the values in the advantages"),
    ("advantages_and_value_loss", value_loss_halved, "without the factor 1/2"),
    ("advantages_and_value_loss", value_loss_detached, "carries no gradient"),
    ("sequence_log_probs", sequence_log_probs_unshifted, "position t - 1 predict token t"),
    ("sequence_log_probs", sequence_log_probs_with_the_prompt, "completion tokens only"),
    ("sequence_log_probs", sequence_log_probs_from_logits, "log_softmax of the logits"),
    ("sequence_log_probs", sequence_log_probs_averaged, "do not average them"),
    ("sequence_reinforce_loss", sequence_loss_without_baseline, "subtract the baseline"),
    ("sequence_reinforce_loss", sequence_loss_ascending, "minimise the *negative*"),
    ("sequence_reinforce_loss", sequence_loss_normalised, "dividing by the standard deviation"),
    ("sequence_reinforce_loss", sequence_loss_not_detached, "detach the rewards"),
]
