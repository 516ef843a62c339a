"""Chapter 6's InstructGPT pipeline on the tiny language model (solutions/reward_model.py): the hidden preference
on hand-written reviews, the labellers' noise model, SFT, the preference data's bookkeeping, the reward model,
DPO and its likelihood displacement, the evaluation helpers and the preference widget's back end.

The fast tests train on small data (100 comparison groups); the chapter-sized runs and their targets are in the
tests marked slow and in benchmarks/rlhf_pipeline.py."""

import math

import numpy as np
import pytest
import torch

from solutions.corpus import review_prompts, well_formed_review
from solutions.language_model import completion_batch, pretrained_model, sample
from solutions.reward_model import (LABEL_TEMPERATURE, MALFORMED_SCORE, DPOConfig, RewardModel,
                                    completions_to_rank, demonstrations, evaluate_policy, fit_reader_reward,
                                    hidden_preference, labeller_agreement, likelihood_displacement,
                                    preference_data, rank_completions, response_loss, reward_model,
                                    reward_model_accuracy, sft_model, sft_samples, train_dpo, train_reward_model,
                                    win_rate)
from solutions.threads import single_threaded


@pytest.fixture(autouse=True)
def one_thread():
    with single_threaded():
        yield


@pytest.fixture(scope="module")
def sft():
    return sft_model(0, progress=False)


@pytest.fixture(scope="module")
def small_data(sft):
    """100 comparison groups of 6 SFT completions (80 to train on, 20 held out)."""
    return preference_data(sft, n_groups=100, seed=0)


@pytest.fixture(scope="module")
def small_reward_model(sft, small_data):
    return train_reward_model(small_data, sft, n_epochs=3, progress=False)


# ------------------------------------------------------------------------------------- the hidden preference


def score(*completions, prompt="the food was"):
    return hidden_preference([prompt] * len(completions), list(completions)).tolist()


def test_hidden_preference_worked_values():
    assert score("great .", "excellent .", "fine .", "rude .", "terrible .") == [1.0, 1.5, 0.0, -1.0, -1.5]
    # a second clause: +0.5; "and" joins clauses of the same sentiment, "but" clauses of different ones
    assert score("great and the staff were kind .", "great but the staff were kind .") == [2.5, 2.0]
    assert score("great but the staff were rude .", "great and the staff were rude .") == [0.5, 0.0]
    assert score("fine and the staff were okay .", "fine but the staff were okay .") == [0.5, 0.0]
    # the same adjective twice: -0.5; the best and the worst well-formed reviews
    assert score("excellent and the staff were perfect .", "perfect and the staff were perfect .",
                 "awful but the staff were awful .") == [3.5, 3.0, -3.5]
    # malformed: a cut review, a wrong verb, the subject repeated, no full stop -- and repetition costs more
    assert score("great and the staff were", "great and the staff was kind .", "great and the food was kind .",
                 "great") == [MALFORMED_SCORE] * 4
    assert score("great great .", "great great great great", "great " * 9) == [-4.5, -5.5, -6.0]


def test_hidden_preference_orders_well_formed_positive_over_neutral_over_malformed():
    well_formed_positive, neutral, malformed = score("lovely and the view was great .", "okay .", "lovely view .")
    assert well_formed_positive > neutral > malformed
    # every well-formed review scores above every malformed text
    assert -3.5 > MALFORMED_SCORE
    # the degenerate text a policy without a KL penalty drifts to scores below the neutral review
    assert max(score("great great great great great .", "perfect perfect perfect perfect")) < neutral


def test_hidden_preference_bad_input():
    with pytest.raises(ValueError, match="prompts"):
        hidden_preference(["the food was"], ["great .", "fine ."])
    with pytest.raises(ValueError, match="review prompt"):
        hidden_preference(["two plus three is"], ["five ."])
    assert hidden_preference([], []).shape == (0,)
    assert hidden_preference(["the staff were"], ["kind ."]).dtype == torch.float64


def test_demonstrations():
    pairs = demonstrations(300, seed=0)
    assert pairs == demonstrations(300, seed=0) and pairs != demonstrations(300, seed=1)
    assert len(pairs) == 300 and [p for p, _ in pairs[:10]] == review_prompts()
    assert all(well_formed_review(f"{p} {c}") for p, c in pairs)
    scores = hidden_preference([p for p, _ in pairs], [c for _, c in pairs])
    assert 0.8 < float(scores.mean()) < 1.4  # good reviews, not the best (3.5)
    second = np.mean([len(c.split()) > 2 for _, c in pairs])
    assert 0.4 < second < 0.6
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError):
            demonstrations(bad)


# --------------------------------------------------------------------------------------------- the labellers


def test_rank_completions_is_a_permutation_and_noiseless_in_the_limit():
    scores = torch.tensor([[0.0, 2.0, 1.0, -1.0], [3.0, 3.5, -4.0, 0.5]], dtype=torch.float64)
    rankings = rank_completions(scores, torch.Generator().manual_seed(0))
    assert rankings.dtype == torch.int64 and rankings.shape == (2, 4)
    assert (rankings.sort(dim=1).values == torch.arange(4)).all()
    precise = rank_completions(scores, torch.Generator().manual_seed(0), temperature=1e-6)
    assert precise.tolist() == [[1, 2, 0, 3], [1, 0, 3, 2]]
    for bad in (0.0, -1.0, True):
        with pytest.raises(ValueError, match="temperature"):
            rank_completions(scores, torch.Generator(), temperature=bad)
    with pytest.raises(ValueError, match="scores"):
        rank_completions(torch.zeros(4), torch.Generator())


def test_each_pair_of_a_ranking_follows_bradley_terry():
    """Plackett-Luce by Gumbel noise: P(i ranked above j) = sigma((s_i - s_j) / T) for every pair of the
    ranking, not only for neighbours. 20,000 rankings: the standard error of each frequency is <= 0.0036."""
    s = torch.tensor([1.0, 0.5, 0.0, -1.0], dtype=torch.float64)
    n = 20_000
    rankings = rank_completions(s.expand(n, 4), torch.Generator().manual_seed(1))
    position = rankings.argsort(dim=1)  # position[k, i]: where completion i was ranked
    for i in range(4):
        for j in range(i + 1, 4):
            frequency = float((position[:, i] < position[:, j]).double().mean())
            expected = 1 / (1 + math.exp(-(s[i] - s[j]) / LABEL_TEMPERATURE))
            assert abs(frequency - expected) < 0.015, (i, j, frequency, expected)


def test_two_labellers_agree_as_the_noise_model_says(sft):
    """The agreement of two simulated labellers on the same groups matches labeller_agreement (statistically),
    and on the SFT model's samples it is within the 65-75 % quoted for people."""
    data = preference_data(sft, n_groups=200, seed=3)
    generator = torch.Generator().manual_seed(4)
    agreements = []
    for _ in range(10):
        first = rank_completions(data.hidden_scores, generator).argsort(dim=1)
        second = rank_completions(data.hidden_scores, generator).argsort(dim=1)
        i, j = torch.triu_indices(6, 6, 1)
        agreements.append(float(((first[:, i] < first[:, j]) == (second[:, i] < second[:, j])).double().mean()))
    predicted = labeller_agreement(data.hidden_scores)
    assert abs(np.mean(agreements) - predicted) < 0.015  # 30,000 pairs: standard error about 0.003
    assert 0.65 < predicted < 0.75
    assert labeller_agreement(data.hidden_scores, exclude_ties=True) > predicted  # ties: agreement 1/2
    assert labeller_agreement(data.hidden_scores, temperature=1e-3, exclude_ties=True) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------------ SFT


def test_sft_lowers_the_response_loss_and_raises_good_reviews(sft):
    pretrained = pretrained_model(0, progress=False)
    held_out = demonstrations(200, seed=12345)  # demonstrations SFT never saw
    assert response_loss(sft, held_out) < response_loss(pretrained, held_out) - 0.03

    def good_share(model):
        batch = sample(model, review_prompts(), 10, num_generations=40, generator=torch.Generator().manual_seed(5))
        scores = hidden_preference(batch.prompt_texts(), batch.completion_texts())
        return float(((scores > 0) & (scores > MALFORMED_SCORE)).double().mean())

    # 400 samples each: standard error about 0.025; measured 0.26 before and 0.61 after
    assert good_share(sft) > good_share(pretrained) + 0.2


def test_sft_model_is_cached_and_fresh(sft):
    again = sft_model(0, progress=False)
    assert again is not sft
    assert all(torch.equal(a, b) for a, b in zip(sft.state_dict().values(), again.state_dict().values()))
    with torch.no_grad():
        next(again.parameters()).add_(1.0)
    assert not torch.equal(next(sft_model(0, progress=False).parameters()), next(again.parameters()))


# ------------------------------------------------------------------------------------------- preference data


def test_preference_data_bookkeeping(small_data):
    data = small_data
    K = data.num_generations
    assert K == 6 and data.chosen.shape == data.rejected.shape == (100, 15)
    assert len(data.completions) == len(data.tokens) == 600
    # every pair is (ranked higher, ranked lower) of the labeller's ranking, and every pair of a group occurs once
    position = data.rankings.argsort(dim=1)
    assert (position.gather(1, data.chosen) < position.gather(1, data.rejected)).all()
    pairs = {tuple(sorted(p)) for p in zip(data.chosen[0].tolist(), data.rejected[0].tolist())}
    assert len(pairs) == 15
    # the split is by comparison group: disjoint, complete, 20 % held out
    train, held = set(data.train_groups.tolist()), set(data.held_out_groups.tolist())
    assert not train & held and train | held == set(range(100)) and len(held) == 20
    # the hidden scores are those of the texts, and the prompts cycle through the review prompts
    assert data.prompts[:10] == review_prompts()
    rows = data.rows(torch.tensor([3]))
    assert rows.tolist() == list(range(18, 24))
    assert torch.equal(data.hidden_scores[3], hidden_preference([data.prompts[3]] * 6,
                                                                data.completions[18:24]))
    # hidden_pairs orients the pairs by the hidden preference and drops its ties
    better, worse = data.hidden_pairs(data.held_out_groups)
    assert (data.hidden_scores[better[:, 0], better[:, 1]] > data.hidden_scores[worse[:, 0], worse[:, 1]]).all()


def test_preference_data_bad_input(sft):
    for bad in ({"n_groups": 1}, {"num_generations": 1}, {"held_out_fraction": 0.0}, {"held_out_fraction": 1.0},
                {"n_groups": 10.0}):
        with pytest.raises(ValueError):
            preference_data(sft, **bad)


# ------------------------------------------------------------------------------------------- the reward model


def test_reward_model_reads_the_last_real_token(sft):
    model = RewardModel(sft, seed=0)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in sft.parameters()) - 56 * 65 + 65
    prompts, completions = ["the food was", "the staff were"], ["great .", "kind and the food was fresh ."]
    tokens, attention_mask, _ = completion_batch(prompts, completions)
    both = model(tokens, attention_mask)
    for row in range(2):
        alone = model(*completion_batch(prompts[row: row + 1], completions[row: row + 1])[:2])
        assert torch.allclose(both[row], alone[0], atol=1e-5)
    # the score is the head at the last real token: padding after it changes nothing
    padded = torch.cat([tokens, torch.zeros(2, 3, dtype=torch.int64)], dim=1)
    padded_mask = torch.cat([attention_mask, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    assert torch.allclose(model(padded, padded_mask), both, atol=1e-5)
    # a text is read as finished (<eos> appended); token lists are taken as given
    cut = model.score(["the food was"], [encode_ids("great")])
    finished = model.score(["the food was"], ["great"])
    assert not torch.allclose(cut, finished)


def encode_ids(text):
    from solutions.corpus import encode
    return encode(text, bos=False)


def test_reward_model_beats_chance_by_far(small_data, small_reward_model):
    """Trained on 80 groups of 6 (1,200 pairs); on the 20 held-out groups (about 250 pairs of different hidden
    scores, 300 labelled pairs) chance is 0.5 with a standard error of 0.03. Measured: 0.73 against the hidden
    preference, 0.62 against the labels, which the hidden preference itself matches on 0.8 of the pairs."""
    accuracy = reward_model_accuracy(small_reward_model.model, small_data)
    assert accuracy["hidden"] > 0.65
    assert accuracy["labels"] > 0.55
    assert accuracy["labels_by_hidden"] > accuracy["labels"]  # the labels' noise caps the model's accuracy
    assert small_reward_model.held_out_hidden_accuracies[-1] == pytest.approx(accuracy["hidden"])


def test_reward_model_is_normalised_on_sft_samples(sft, small_reward_model):
    model = small_reward_model.model
    samples = sft_samples(sft, seed=0)
    with torch.no_grad():
        scores = model(samples.tokens, samples.attention_mask)
    assert float(scores.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(scores.std()) == pytest.approx(1.0, abs=1e-5)
    fresh = sft_samples(sft, seed=99)
    with torch.no_grad():
        fresh_scores = model(fresh.tokens, fresh.attention_mask)
    assert abs(float(fresh_scores.mean())) < 0.2 and 0.8 < float(fresh_scores.std()) < 1.2
    assert torch.equal(model.score(fresh.prompt_texts()[:5], fresh.completion_tokens()[:5]), fresh_scores[:5])


def test_train_reward_model_bad_input(sft, small_data):
    for bad in ({"n_epochs": 0}, {"batch_size": 0}, {"lr": 0.0}):
        with pytest.raises(ValueError):
            train_reward_model(small_data, sft, progress=False, **bad)


# ------------------------------------------------------------------------------------------------------- DPO


def test_dpo_config_bad_input():
    for bad in ({"beta": 0.0}, {"beta": -1.0}, {"learning_rate": 0.0}, {"num_train_epochs": 0},
                {"per_device_train_batch_size": 0}, {"beta": True}):
        with pytest.raises(ValueError):
            DPOConfig(**bad)
    with pytest.raises(ValueError, match="DPOConfig"):
        train_dpo(None, None, config={"beta": 0.5})


def test_dpo_raises_the_implicit_reward_margin_and_the_win_rate(sft, small_data):
    """The chapter's DPOConfig on the small data (30 steps). Measured: margin 0.03 -> 0.47, implicit-reward
    accuracy against the hidden preference 0.80, win rate 0.65 (400 comparisons: standard error 0.025)."""
    result = train_dpo(small_data, sft, progress=False)
    assert result.losses[0] == pytest.approx(math.log(2), abs=1e-5)  # the policy starts as the reference
    assert result.rewards_chosen[0] == pytest.approx(0.0, abs=1e-5)
    assert len(result.losses) == len(result.nll_losses) == 30  # 3 epochs of 80 groups, 8 per step
    margins = result.reward_margins
    assert np.mean(margins[-5:]) > np.mean(margins[:3]) + 0.2
    assert np.mean(result.reward_accuracies[-5:]) > 0.6
    assert result.held_out_hidden_accuracy > 0.65
    assert result.model is not sft
    assert evaluate_policy(result.model, sft, n_per_prompt=40, seed=1).win_rate > 0.57
    # the SFT policy is not changed
    assert all(torch.equal(a, b) for a, b in zip(sft.state_dict().values(),
                                                 sft_model(0, progress=False).state_dict().values()))


def test_a_too_large_learning_rate_lowers_both_log_probabilities(sft, small_data):
    """Plain DPO, one epoch (10 steps). Measured: at 2e-2 the chosen and the rejected log-probabilities fall
    from about -7 nats to about -30 in the first step and stay there; at 2e-3 they move by about 1."""
    runs = likelihood_displacement(small_data, sft, config=DPOConfig(rpo_alpha=None, num_train_epochs=1))
    good, large = runs[2e-3], runs[2e-2]
    assert large.chosen_logps[0] == good.chosen_logps[0]  # the same first batch, before any step
    for logps in (large.chosen_logps, large.rejected_logps):
        assert np.mean(logps[-5:]) < logps[0] - 10
    assert np.mean(good.chosen_logps[-5:]) > np.mean(large.chosen_logps[-5:]) + 10
    assert not large.nll_losses and large.config.learning_rate == 2e-2


@pytest.mark.slow
def test_chapter_targets_seed_0():
    """The chapter-sized pipeline of seed 0 (800 groups): the reward model's held-out accuracy against the hidden
    preference and DPO's win rate against SFT meet the issue's targets (measured 0.898 and 0.780, 1,000
    comparisons; the other seeds in benchmarks/rlhf_pipeline.py)."""
    sft = sft_model(0, progress=False)
    data = preference_data(seed=0)
    assert reward_model_accuracy(reward_model(0, progress=False), data)["hidden"] >= 0.85
    evaluation = evaluate_policy(train_dpo(data, sft, progress=False).model, sft, n_per_prompt=100, seed=7)
    assert evaluation.win_rate >= 0.75 and evaluation.kl_k1 < 3


# ----------------------------------------------------------------------------------------------- evaluation


def test_a_policy_against_itself(sft):
    evaluation = evaluate_policy(sft, sft, n_per_prompt=40, seed=0)
    assert abs(evaluation.win_rate - 0.5) < 0.08  # 400 comparisons; ties count 1/2
    assert evaluation.kl_k1 == pytest.approx(0.0, abs=1e-4) and evaluation.kl_k3 == pytest.approx(0.0, abs=1e-4)
    assert abs(evaluation.hidden_score - evaluation.reference_hidden_score) < 0.4
    assert win_rate(sft, sft, n_per_prompt=40, seed=0) == evaluation.win_rate
    with pytest.raises(ValueError):
        evaluate_policy(sft, sft, n_per_prompt=0)
    with pytest.raises(ValueError, match="review prompt"):
        evaluate_policy(sft, sft, ["two plus three is"], n_per_prompt=2)


def test_a_better_policy_wins(sft):
    """The pre-trained model writes fewer good reviews than the SFT model: it loses head to head, and its KL
    to the SFT model is positive."""
    pretrained = pretrained_model(0, progress=False)
    evaluation = evaluate_policy(pretrained, sft, n_per_prompt=40, seed=0)
    assert evaluation.win_rate < 0.4
    assert evaluation.kl_k1 > 0.1 and evaluation.kl_k3 > 0.1


# ---------------------------------------------------------------------------------------- the preference widget


def test_fit_reader_reward_learns_the_reader_s_words():
    completions = ["great .", "fine .", "rude .", "great and the staff were kind .",
                   "fine but the view was rude ."]
    reader = fit_reader_reward(completions, [[3, 0, 1, 4, 2]])
    assert reader.n_pairs == 10 and reader.training_accuracy == 1.0
    weights = reader.word_weights()
    assert weights["great"] > 0 > weights["rude"]
    assert "excellent" not in weights  # never compared: nothing learned
    new = reader.score(["the food was"] * 3, ["great .", "rude .", "excellent ."])
    assert new[0] > new[2] == 0 > new[1]
    # several rankings, one per prompt
    two = fit_reader_reward(completions, [[0, 2], [3, 4, 1]])
    assert two.n_pairs == 4
    for rankings in ([[0]], [[0, 9]], [[0, 0]]):
        with pytest.raises(ValueError):
            fit_reader_reward(completions, rankings)
    with pytest.raises(ValueError, match="l2"):
        fit_reader_reward(completions, [[0, 1]], l2=0.0)


def test_completions_to_rank(sft):
    texts = completions_to_rank("the staff were", 6, policy=sft, seed=1)
    assert len(texts) == len(set(texts)) == 6
    assert texts == completions_to_rank("the staff were", 6, policy=sft, seed=1)
    with pytest.raises(ValueError):
        completions_to_rank("the staff were", 1, policy=sft)
