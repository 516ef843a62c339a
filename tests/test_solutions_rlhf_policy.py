"""RL against a learned reward on the tiny language model (Chapter 6): GAE over tokens, the value model's
alignment, PPO-RLHF raising its reward within a KL budget, the per-token KL penalty bounding the KL, GRPO-RLHF's
measurements on exactly its samples, the reward model scoring completions as sampled, serial == parallel runs,
and (slow) over-optimisation of the reward model at beta = 0 on the chapter's seeds.

The fast tests use the pre-trained model and the corpus's programmatic rewards as stand-ins (any policy and any
reward function will do: the code is generic); the slow ones use the chapter's SFT model and reward model."""

import copy
import math

import numpy as np
import pytest
import torch

from solutions.corpus import encode, review_prompts, review_reward, sentiment_reward
from solutions.grpo_language_model import GRPOConfig
from solutions.language_model import create_reference_model, pretrained_model, sample, token_log_probs
from solutions.ppo import gae
from solutions.rlhf import sequence_kl
from solutions.rlhf_policy import (CHAPTER_BETAS, CURVES, GRPORLHFConfig, PPORLHFConfig, RewardModelScore,
                                   ValueModel, _MeasuredReward, as_sampled, chapter_grpo_config,
                                   overoptimisation_sweep, rlhf_runs, score_samples, sqrt_kl_bins,
                                   token_advantages, train_grpo_rlhf, train_ppo_rlhf)
from solutions.threads import single_threaded


@pytest.fixture(autouse=True)
def one_thread():
    with single_threaded():
        yield


def words_reward(prompts, completions):
    """Chapter 4's hackable reward: the sentiment of the words alone (module level: it pickles)."""
    return sentiment_reward(completions)


def fresh_model():
    return pretrained_model(0, progress=False)


def parameters_of(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# -------------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("bad", [
    {"batch_size": 0}, {"batch_size": 2.0}, {"num_mini_batches": 0}, {"batch_size": 10, "num_mini_batches": 3},
    {"num_ppo_epochs": 0}, {"n_updates": 0}, {"response_length": 0}, {"kl_coef": -0.1},
    {"kl_coef": float("inf")}, {"kl_coef": float("nan")}, {"cliprange": 0.0}, {"cliprange": 1.0},
    {"cliprange_value": 0.0}, {"vf_coef": -1.0}, {"gamma": 1.5}, {"lam": -0.1}, {"learning_rate": 0.0},
    {"temperature": 0.0}, {"max_grad_norm": 0.0}, {"max_grad_norm": True},
])
def test_bad_config_raises(bad):
    with pytest.raises(ValueError):
        PPORLHFConfig(**bad)


def test_config_defaults_follow_trl():
    config = PPORLHFConfig()
    assert (config.cliprange, config.cliprange_value, config.vf_coef, config.gamma, config.lam,
            config.num_ppo_epochs) == (0.2, 0.2, 0.1, 1.0, 0.95, 4)
    assert config.mini_batch_size * config.num_mini_batches == config.batch_size


# -------------------------------------------------------------------------------- GAE over tokens


def test_token_advantages_hand_worked():
    """Two completions of 3 and 1 tokens after a 2-token prompt, padding after the short one."""
    mask = torch.tensor([[False, False, True, True, True], [False, False, True, False, False]])
    rewards = torch.tensor([[0.0, 0.0, -0.1, -0.2, 1.0], [0.0, 0.0, 2.0, 0.0, 0.0]])
    values = torch.tensor([[9.0, 9.0, 0.5, 0.4, 0.3], [9.0, 9.0, 1.5, 7.0, 7.0]])  # junk outside the mask
    # lam = 1, gamma = 1: A_t = (sum of the rewards from t on) - V(S_t)
    A = token_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    expected = torch.tensor([[0.0, 0.0, 0.7 - 0.5, 0.8 - 0.4, 1.0 - 0.3], [0.0, 0.0, 2.0 - 1.5, 0.0, 0.0]])
    torch.testing.assert_close(A, expected)
    # lam = 0: the one-step TD errors r_t + V(S_{t+1}) - V(S_t), the last token terminal
    A = token_advantages(rewards, values, mask, gamma=1.0, lam=0.0)
    expected = torch.tensor([[0.0, 0.0, -0.1 + 0.4 - 0.5, -0.2 + 0.3 - 0.4, 1.0 - 0.3],
                             [0.0, 0.0, 2.0 - 1.5, 0.0, 0.0]])
    torch.testing.assert_close(A, expected)
    # lam = 0.95, gamma = 0.9 against solutions.ppo.gae on the first row alone
    A = token_advantages(rewards, values, mask, gamma=0.9, lam=0.95)
    row = gae(rewards[0, 2:].numpy(), values[0, 2:].numpy(), np.array([0.4, 0.3, 0.0]),
              np.array([False, False, True]), np.zeros(3, dtype=bool), 0.9, 0.95)
    np.testing.assert_allclose(A[0, 2:].numpy(), row, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError):
        token_advantages(rewards, values[:, :3], mask, 1.0, 0.95)
    with pytest.raises(ValueError):
        token_advantages(rewards, values, mask.float(), 1.0, 0.95)


def test_value_model_is_aligned_with_token_log_probs_and_starts_at_zero():
    model = fresh_model()
    value_model = ValueModel(model)
    batch = sample(model, review_prompts()[:4], 6, generator=torch.Generator().manual_seed(0))
    values = value_model(batch.tokens, batch.attention_mask)
    assert values.shape == batch.tokens.shape and torch.all(values == 0)
    with torch.no_grad():
        value_model.network.head.bias.fill_(0.0)
        value_model.network.head.weight.normal_(generator=torch.Generator().manual_seed(1))
        values = value_model(batch.tokens, batch.attention_mask)
        hidden, _ = model.hidden_states(batch.tokens, batch.attention_mask)  # the same trunk as the SFT model
        head = hidden @ value_model.network.head.weight[0]
    assert torch.all(values[:, 0] == 0)
    torch.testing.assert_close(values[:, 1:], head[:, :-1])  # column t: the head read at position t - 1
    assert torch.equal(parameters_of(model), parameters_of(fresh_model()))  # the SFT model is not changed


# -------------------------------------------------------------------------------- PPO


def test_ppo_raises_its_reward_within_a_kl_budget():
    """PPO with the chapter's configuration on Chapter 4's review reward (a well-formed positive review scores up
    to +2): 12 updates raise the mean reward of the samples from about -0.2 (the pre-trained model) by more than
    0.4 (measured, seeds 0-2: +0.56 to +0.73; seed 0: -0.21 to 0.52, the means of the first and last three
    updates), while the KL to the reference stays within 5 nats per completion (seed 0: 1.5 over the last three
    updates; a single batch of 64 can reach 10 when one completion is very unlikely under the reference)."""
    model = fresh_model()
    result = train_ppo_rlhf(model, review_prompts(), review_reward, PPORLHFConfig(n_updates=12), seed=0,
                            hidden_fn=words_reward, progress=False, n_shown=2)
    for curve in CURVES:
        assert len(getattr(result, curve)) == 12
    assert result.kls[0] == pytest.approx(0.0, abs=1e-5)  # the first batch is sampled by the reference itself
    first, last = np.mean(result.learned_rewards[:3]), np.mean(result.learned_rewards[-3:])
    assert last > first + 0.4, (first, last)
    assert np.mean(result.kls[-3:]) < 5.0, result.kls
    assert all(np.isfinite(result.hidden_scores)) and len(result.samples_after) == 2
    assert set(result.diagnostics) == {"policy_loss", "value_loss", "clip_fraction", "approx_kl", "kl_penalty"}
    np.testing.assert_allclose(result.diagnostics["kl_penalty"], -0.1 * np.array(result.kls), rtol=1e-6)


def test_the_kl_penalty_bounds_the_kl():
    """On the hackable words-only reward, kl_coef = 0 lets the policy drift far from the reference (strings of
    positive words), kl_coef = 1 holds it close. Measured (12 updates of 32, Adam 1e-3, seeds 0-2; mean KL of the
    last 4 updates): 10.4, 9.7, 13.5 nats per completion against 0.71, 0.98, 0.61."""
    kls = {}
    for kl_coef in (0.0, 1.0):
        for seed in (0, 1):
            config = PPORLHFConfig(batch_size=32, n_updates=12, kl_coef=kl_coef, learning_rate=1e-3)
            result = train_ppo_rlhf(fresh_model(), review_prompts(), words_reward, config, seed=seed,
                                    progress=False, n_shown=0)
            kls[kl_coef, seed] = np.mean(result.kls[-4:])
    for seed in (0, 1):
        assert kls[0.0, seed] > max(5.0, 4 * kls[1.0, seed]), kls


def test_same_seed_same_run_and_bad_input():
    config = PPORLHFConfig(batch_size=8, n_updates=2)
    a = train_ppo_rlhf(fresh_model(), review_prompts(), review_reward, config, seed=3, progress=False)
    b = train_ppo_rlhf(fresh_model(), review_prompts(), review_reward, config, seed=3, progress=False)
    assert a.learned_rewards == b.learned_rewards and a.kls == b.kls
    assert torch.equal(parameters_of(a.model), parameters_of(b.model))
    assert all(math.isnan(h) for h in a.hidden_scores)
    model = fresh_model()
    with pytest.raises(ValueError, match="no prompts"):
        train_ppo_rlhf(model, [], review_reward, config, progress=False)
    with pytest.raises(ValueError, match="PPORLHFConfig"):
        train_ppo_rlhf(model, review_prompts(), review_reward, GRPOConfig(), progress=False)
    with pytest.raises(ValueError, match="finite rewards"):
        train_ppo_rlhf(model, review_prompts(), lambda p, c: torch.zeros(3), config, progress=False)
    with pytest.raises(ValueError, match="seed"):
        train_ppo_rlhf(model, review_prompts(), review_reward, config, seed=-1, progress=False)
    with pytest.raises(ValueError, match="GRPOConfig"):
        train_grpo_rlhf(model, review_prompts(), review_reward, config, progress=False)


# -------------------------------------------------------------------------------- GRPO


def test_measured_reward_rebuilds_the_sampled_tokens_exactly():
    """The GRPO wrapper sees texts; it must measure the KL of the very tokens sampled, cut completions included."""
    model = fresh_model()
    reference = create_reference_model(fresh_model())
    with torch.no_grad():  # move the policy away from the reference
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    batch = sample(model, review_prompts(), 5, generator=torch.Generator().manual_seed(2), num_generations=4)
    assert batch.truncated.any() and (~batch.truncated).any()
    # texts drop <pad> and <bos>: the rebuilding is exact as long as none is sampled inside a completion
    assert not torch.isin(batch.tokens[batch.completion_mask], torch.tensor([0, 1])).any()
    measured = _MeasuredReward(review_reward, words_reward, model, reference, 5, 1.0)
    rewards = measured(batch.prompt_texts(), batch.completion_texts())
    torch.testing.assert_close(rewards, review_reward(batch.prompt_texts(), batch.completion_texts()))
    with torch.no_grad():
        kl = sequence_kl(token_log_probs(model, batch.tokens, batch.attention_mask),
                         token_log_probs(reference, batch.tokens, batch.attention_mask), batch.completion_mask)
    assert measured.kls[0] == pytest.approx(kl.mean().item(), rel=1e-5)
    assert measured.learned_rewards[0] == pytest.approx(rewards.mean().item())
    assert measured.hidden_scores[0] == pytest.approx(words_reward(None, batch.completion_texts()).mean().item())
    # with kl_coef, PPO's penalty in the reward: the reward minus kl_coef times each completion's log-ratio
    penalised = _MeasuredReward(review_reward, None, model, reference, 5, 1.0, kl_coef=0.5)
    torch.testing.assert_close(penalised(batch.prompt_texts(), batch.completion_texts()), rewards - 0.5 * kl)
    assert penalised.learned_rewards == measured.learned_rewards  # the recorded learned reward is not penalised


def test_grpo_rlhf_is_chapter_5s_train_grpo_with_the_measurements():
    config = GRPOConfig(n_updates=3, prompts_per_update=4, num_generations=4, beta=0.1, max_completion_length=10)
    result = train_grpo_rlhf(fresh_model(), review_prompts(), review_reward, config, seed=0,
                             hidden_fn=words_reward, progress=False, n_shown=1)
    # the recorded learned reward is train_grpo's own mean reward of the same batch
    assert result.learned_rewards == result.diagnostics["mean_rewards"]
    assert result.kls[0] == pytest.approx(0.0, abs=1e-5) and result.kls[-1] > 0
    assert result.completion_lengths == result.diagnostics["completion_lengths"]
    assert all(len(getattr(result, curve)) == 3 for curve in CURVES)


# -------------------------------------------------------------------------------- several runs


def test_serial_and_parallel_runs_are_identical():
    configs = {"ppo": PPORLHFConfig(batch_size=8, n_updates=2),
               "grpo": GRPOConfig(n_updates=2, prompts_per_update=2, num_generations=4, max_completion_length=10)}
    kwargs = dict(seeds=[0, 1], policy=fresh_model(), prompts=review_prompts(), reward_fn=review_reward,
                  hidden_fn=words_reward, eval_generations=2, progress=False)
    serial = rlhf_runs(configs, n_jobs=1, **kwargs)
    parallel = rlhf_runs(configs, n_jobs=2, **kwargs)
    for name in configs:
        s, p = serial[name], parallel[name]
        for curve in CURVES:
            assert s[curve].shape == (2, 2)
            assert np.array_equal(s[curve], p[curve]), (name, curve)
        for key in s["after"]:
            assert np.array_equal(s["after"][key], p["after"][key])
        for a, b in zip(s["results"], p["results"], strict=True):
            assert torch.equal(parameters_of(a.model), parameters_of(b.model))
    assert serial["ppo"]["before"] == parallel["grpo"]["before"]
    assert serial["ppo"]["before"]["kl"] == 0.0
    # each run is the training function on a copy of the policy
    alone = train_ppo_rlhf(fresh_model(), review_prompts(), review_reward, configs["ppo"], seed=1,
                           hidden_fn=words_reward, progress=False)
    assert np.array_equal(serial["ppo"]["learned_rewards"][1], alone.learned_rewards)
    with pytest.raises(ValueError):
        rlhf_runs({}, **kwargs)
    with pytest.raises(ValueError):
        rlhf_runs({"a": {"beta": 0}}, **kwargs)
    with pytest.raises(ValueError):
        rlhf_runs(configs, n_jobs=0, **kwargs)


def test_score_samples_of_the_reference_has_zero_kl():
    model = fresh_model()
    out = score_samples(model, review_prompts(), review_reward, hidden_fn=words_reward,
                          reference=create_reference_model(model), num_generations=2)
    assert out["kl"] == pytest.approx(0.0, abs=1e-6)
    assert set(out) == {"learned_reward", "hidden_score", "kl", "completion_length"}
    assert math.isnan(score_samples(model, review_prompts(), review_reward, num_generations=1)["hidden_score"])


# -------------------------------------------------------------------------------- scoring as sampled


class FakeRewardModel:
    """Records what it is asked to score; scores a completion by its number of tokens."""

    def __init__(self):
        self.seen = []

    def score(self, prompts, completions):
        self.seen.append((list(prompts), [list(c) for c in completions]))
        return torch.tensor([float(len(c)) for c in completions])


def test_reward_model_score_rebuilds_cut_completions_without_eos():
    fake = FakeRewardModel()
    reward_fn = RewardModelScore(fake, 3)
    scores = reward_fn(["the food was", "the food was"], ["great .", "great great great"])
    # "great ." ended: <eos> after it; "great great great" filled the 3 tokens: cut, no <eos>
    assert fake.seen[0][1] == [encode("great .", bos=False, eos=True), encode("great great great", bos=False)]
    assert scores.tolist() == [3.0, 3.0]
    assert as_sampled([""], 3) == [[2]]  # an empty completion is <eos> alone
    with pytest.raises(ValueError, match="longer"):
        as_sampled(["great great great great"], 3)
    with pytest.raises(ValueError):
        RewardModelScore(fake, 0)
    # the trainers refuse a reward function that rebuilds completions of another length than they sample
    with pytest.raises(ValueError, match="sampler"):
        train_ppo_rlhf(fresh_model(), review_prompts(), RewardModelScore(fake, 8), PPORLHFConfig(n_updates=1),
                       progress=False)
    with pytest.raises(ValueError, match="sampler"):
        train_grpo_rlhf(fresh_model(), review_prompts(), RewardModelScore(fake, 8), chapter_grpo_config(),
                        progress=False)


# -------------------------------------------------------------------------------- Gao et al.'s plot


def test_sqrt_kl_bins_hand_worked():
    run = {"kls": np.array([[0.0, 1.0, 4.0], [-0.5, 9.0, 16.0]]),  # sqrt: 0, 1, 2 / 0 (negative k1), 3, 4
           "hidden_scores": np.array([[1.0, 2.0, 3.0], [5.0, 0.0, -4.0]]),
           "learned_rewards": np.array([[0.0, 1.0, 2.0], [0.0, 3.0, 4.0]])}
    out = sqrt_kl_bins(run, n_bins=2)
    np.testing.assert_allclose(out["edges"], [0.0, 2.0, 4.0])
    assert out["count"].tolist() == [3, 3]  # [0, 2): 0, 1, 0 ; [2, 4]: 2, 3, 4
    np.testing.assert_allclose(out["sqrt_kl"], [1 / 3, 3.0])
    np.testing.assert_allclose(out["hidden_score"], [(1 + 2 + 5) / 3, (3 + 0 - 4) / 3])
    np.testing.assert_allclose(out["learned_reward"], [1 / 3, 3.0])
    out = sqrt_kl_bins(run, n_bins=4, max_sqrt_kl=2.0)  # 3 and 4 left out; an empty bin is NaN
    assert out["count"].tolist() == [2, 0, 1, 1] and np.isnan(out["hidden_score"][1])
    with pytest.raises(ValueError):
        sqrt_kl_bins(run, n_bins=0)
    with pytest.raises(ValueError):
        sqrt_kl_bins({**run, "kls": run["kls"][:, :2]})


def test_chapter_configs():
    config = chapter_grpo_config()
    assert (config.beta, config.scale_rewards, config.learning_rate, config.n_updates) == (0.3, "none", 2e-3, 40)
    assert config.max_completion_length == 10
    assert chapter_grpo_config(beta=0.0).beta == 0.0 and chapter_grpo_config().beta == 0.3  # a new object
    assert CHAPTER_BETAS[0] == 0.0 and CHAPTER_BETAS[-1] == config.beta
    with pytest.raises(ValueError):
        chapter_grpo_config(beta=-1.0)
    assert isinstance(config, GRPORLHFConfig) and config.kl_coef == 0.0  # GRPO's own form: the KL in the loss
    for bad in (-0.1, float("inf"), float("nan"), True):
        with pytest.raises(ValueError):
            GRPORLHFConfig(kl_coef=bad)


def test_grpo_with_the_kl_in_the_reward_trains_on_the_penalised_reward():
    config = GRPORLHFConfig(n_updates=3, prompts_per_update=4, num_generations=4, beta=0.0, kl_coef=1.0,
                            max_completion_length=10)
    result = train_grpo_rlhf(fresh_model(), review_prompts(), review_reward, config, seed=0, progress=False,
                             n_shown=0)
    # train_grpo's own mean reward is the penalised one: the learned reward minus kl_coef times the mean KL
    np.testing.assert_allclose(result.diagnostics["mean_rewards"],
                               np.array(result.learned_rewards) - np.array(result.kls), rtol=1e-5, atol=1e-6)
    assert result.kls[-1] > 0


# -------------------------------------------------------------------------------- the chapter (slow)


@pytest.fixture(scope="module")
def chapter_sweep():
    """The chapter's over-optimisation runs: GRPO (chapter_grpo_config) from the SFT model against the reward
    model (seed 0), beta = 0 and the chapter's 0.3, seeds 0-4, on two processes."""
    from solutions.reward_model import hidden_preference, reward_model, sft_model
    policy, rm = sft_model(0, progress=False), reward_model(0, progress=False)
    runs = overoptimisation_sweep(policy, review_prompts(), RewardModelScore(rm, 10), hidden_preference,
                                  betas=(0.0, 0.3), seeds=range(5), n_jobs=2, progress=False)
    return policy, rm, runs


@pytest.mark.slow
def test_overoptimisation_at_beta_0_and_not_at_the_chapters_beta(chapter_sweep):
    """Gao et al.'s over-optimisation, pinned on the chapter's seeds 0-4 (issue 15). At beta = 0 the learned
    reward rises throughout (measured: the mean of the first 10 of 40 updates 0.59-0.89, of the last 10
    1.54-1.63; the final policies' samples 1.54-1.64 against the SFT model's -0.01) while the hidden score falls
    far below the SFT model's (SFT 0.40; last 10 updates -4.5 to -6.0, final policies the same: every seed ends
    in malformed, repetitive text such as "excellent was perfect excellent was fresh ."). At the chapter's
    beta = 0.3 both rise (final policies: learned 0.83-0.99, hidden 0.97-1.21) at a KL of 0.8-1.4 nats against
    16-79 without the penalty."""
    _, _, runs = chapter_sweep
    free, held = runs["beta = 0"], runs["beta = 0.3"]
    sft = free["before"]
    assert free["before"] == held["before"]
    learned = free["learned_rewards"]
    assert (learned[:, -10:].mean(axis=1) > learned[:, :10].mean(axis=1) + 0.5).all(), learned
    assert (free["after"]["learned_reward"] > sft["learned_reward"] + 1.0).all(), free["after"]
    assert (free["after"]["hidden_score"] < sft["hidden_score"] - 2.0).all(), free["after"]
    assert (free["hidden_scores"][:, -10:].mean(axis=1) < sft["hidden_score"] - 2.0).all()
    assert (held["after"]["hidden_score"] > sft["hidden_score"]).all(), held["after"]
    assert (held["after"]["learned_reward"] > sft["learned_reward"] + 0.5).all(), held["after"]
    assert (held["after"]["kl"] < free["after"]["kl"]).all()


@pytest.mark.slow
def test_the_chapters_policies_beat_the_sft_model(chapter_sweep):
    """The issue's target (>= 0.75 of head-to-head comparisons won against the SFT model by the hidden preference),
    with the pipeline benchmark's protocol (1,000 comparisons, evaluation seed 7), seed 0. Measured: PPO 0.778,
    GRPO with the KL in the reward 0.836; GRPO with the k3 term alone (the sweep's beta = 0.3 run) 0.716, short of
    the target, but above the SFT model in hidden score (1.31 against 0.54)."""
    from solutions.reward_model import evaluate_policy, hidden_preference
    policy, rm, runs = chapter_sweep
    ppo = train_ppo_rlhf(copy.deepcopy(policy), review_prompts(), RewardModelScore(rm, 10), PPORLHFConfig(),
                         seed=0, hidden_fn=hidden_preference, progress=False)
    grpo_kl_reward = train_grpo_rlhf(copy.deepcopy(policy), review_prompts(), RewardModelScore(rm, 10),
                                     chapter_grpo_config(beta=0.0, kl_coef=0.1), seed=0, progress=False)
    grpo = runs["beta = 0.3"]["results"][0]
    evaluations = {name: evaluate_policy(result.model, policy, n_per_prompt=100, reward=rm, seed=7)
                   for name, result in (("ppo", ppo), ("grpo kl reward", grpo_kl_reward), ("grpo", grpo))}
    assert evaluations["ppo"].win_rate >= 0.75, evaluations["ppo"]
    assert evaluations["grpo kl reward"].win_rate >= 0.75, evaluations["grpo kl reward"]
    assert evaluations["grpo"].win_rate > 0.65
    assert evaluations["grpo"].hidden_score > evaluations["grpo"].reference_hidden_score + 0.5
    for evaluation in evaluations.values():
        assert evaluation.kl_k1 < 5.0 and evaluation.well_formed > 0.8
