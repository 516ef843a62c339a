"""The tiny language model of Chapters 4-6: its corpus and rewards, the transformer, the sampler, the
log-probabilities, the REINFORCE loss and the training functions."""

import math

import pytest
import torch

from solutions.corpus import (ADJECTIVE_PROBABILITIES, ARITHMETIC_ERROR_RATE, BOS_ID, EOS_ID, NEGATIVE_WORDS,
                              NEUTRAL_WORDS, NOUNS, NUMBER_WORDS, PAD_ID, POSITIVE_WORDS,
                              SECOND_CLAUSE_PROBABILITY, TOKEN_ID, VOCAB, arithmetic_answer, arithmetic_prompts,
                              arithmetic_reward, decode, encode, make_arithmetic, make_corpus, make_reviews,
                              review_prompts, review_reward, sentiment_reward, well_formed_review)
from solutions.language_model import (Completions, TinyLM, TinyLMConfig, completion_batch, create_reference_model,
                                      last_token_positions, mean_reward, next_token_loss, pretrain,
                                      pretrained_model, reinforce_sequences, sample, sequence_log_probs,
                                      sequence_reinforce_loss, token_log_probs)
from solutions.threads import single_threaded

ADJECTIVES = POSITIVE_WORDS + NEGATIVE_WORDS + NEUTRAL_WORDS


@pytest.fixture(autouse=True)
def one_thread():
    with single_threaded():
        yield


@pytest.fixture(scope="module")
def model():
    """A random model with weights large enough that every context gives clearly different logits."""
    net = TinyLM(seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3, generator=generator)
    return net.eval()


@pytest.fixture(scope="module")
def pretrained():
    return pretrained_model(0, progress=False)


def words_of(tokens):
    return [VOCAB[t] for t in tokens]


# ------------------------------------------------------------------------------------------------ corpus


def test_vocabulary_and_tokenizer():
    assert (PAD_ID, BOS_ID, EOS_ID) == (0, 1, 2) and VOCAB[:3] == ("<pad>", "<bos>", "<eos>")
    assert len(VOCAB) == len(set(VOCAB)) == 56
    ids = encode("the staff were kind .", eos=True)
    assert words_of(ids) == ["<bos>", "the", "staff", "were", "kind", ".", "<eos>"]
    assert encode("the food was", bos=False) == [TOKEN_ID["the"], TOKEN_ID["food"], TOKEN_ID["was"]]
    assert decode(ids) == "the staff were kind ."
    # padding dropped, stops at the first <eos>, works on tensors
    padded = [PAD_ID, PAD_ID] + ids + [TOKEN_ID["great"], EOS_ID, PAD_ID]
    assert decode(padded) == "the staff were kind ."
    assert decode(torch.tensor(padded)) == "the staff were kind ."
    with pytest.raises(ValueError, match="tasty"):
        encode("the food was tasty")
    with pytest.raises(ValueError, match="1-D"):
        decode(torch.tensor([padded]))
    with pytest.raises(ValueError, match="outside"):
        decode([1, len(VOCAB)])


def test_corpus_is_reproducible_and_follows_its_grammar():
    corpus = make_corpus(2_000, seed=3)
    assert corpus == make_corpus(2_000, seed=3) and corpus != make_corpus(2_000, seed=4)
    reviews = [s for s in corpus if s.startswith("the ")]
    sums = [s for s in corpus if not s.startswith("the ")]
    assert abs(len(reviews) / len(corpus) - 0.3) < 0.04  # review_fraction = 0.3, 2,000 sentences
    assert all(well_formed_review(s) for s in reviews)
    for s in sums:
        a, plus, b, is_, answer, stop = s.split()
        assert (plus, is_, stop) == ("plus", "is", ".") and NUMBER_WORDS.index(a) + NUMBER_WORDS.index(b) <= 10
        assert answer in NUMBER_WORDS
    for s in corpus:
        assert decode(encode(s, eos=True)) == s


def test_arithmetic_error_rate_is_as_stated():
    n = 20_000
    pairs = make_arithmetic(n, seed=0)
    right = arithmetic_reward([p for p, _ in pairs], [c for _, c in pairs])
    # the standard error of the fraction is sqrt(0.3 * 0.7 / 20,000) = 0.0032: 0.015 is more than 4 of them
    assert abs((1 - right.mean().item()) - ARITHMETIC_ERROR_RATE) < 0.015
    assert len({p for p, _ in pairs}) == 66 == len(arithmetic_prompts())
    right_only = make_arithmetic(200, seed=1, error_rate=0.0)
    assert right_only == [(p, arithmetic_answer(p) + " .") for p, _ in right_only]
    wrong = make_arithmetic(200, seed=1, error_rate=1.0)
    assert arithmetic_reward([p for p, _ in wrong], [c for _, c in wrong]).sum() == 0
    with pytest.raises(ValueError, match="error_rate"):
        make_arithmetic(10, seed=0, error_rate=1.5)


def test_reviews_are_mostly_neutral_with_the_stated_frequencies():
    n = 20_000
    reviews = make_reviews(n, seed=0)
    completions = [c for _, c in reviews]
    adjectives = [w for c in completions for w in c.split() if w in ADJECTIVES]
    for kind, words in (("neutral", NEUTRAL_WORDS), ("positive", POSITIVE_WORDS), ("negative", NEGATIVE_WORDS)):
        share = sum(w in words for w in adjectives) / len(adjectives)
        assert abs(share - ADJECTIVE_PROBABILITIES[kind]) < 0.015
    two_clauses = sum(len(c.split()) == 7 for c in completions) / n
    assert abs(two_clauses - SECOND_CLAUSE_PROBABILITY) < 0.015
    reward = sentiment_reward(completions)
    # mean 0 by symmetry; reward 0 with probability 0.5 * 0.6 + 0.5 * (0.6^2 + 2 * 0.2^2) = 0.52;
    # reward 2 with probability 0.5 * 0.2^2 = 0.02
    assert abs(reward.mean().item()) < 0.03
    assert abs((reward == 0).float().mean().item() - 0.52) < 0.015
    assert abs((reward == 2).float().mean().item() - 0.02) < 0.005
    assert {p for p, _ in reviews} == set(review_prompts()) and len(review_prompts()) == len(NOUNS)


def test_sentiment_reward_counts_words_and_clips():
    texts = ["great and the staff were kind .", "awful .", "fine but the room was lovely .", "great great great .",
             "rude and the bed was dirty .", "quiet ."]
    assert sentiment_reward(texts).tolist() == [2, -1, 1, 2, -2, 0]
    assert sentiment_reward(texts, clip=1).tolist() == [1, -1, 1, 1, -1, 0]
    # the tensor form with a mask scores only the selected tokens
    tokens, attention_mask, completion_mask = completion_batch(["the food was great and the staff were"] * 2,
                                                               ["kind .", "rude ."])
    assert sentiment_reward(tokens, mask=completion_mask).tolist() == [1, -1]
    assert sentiment_reward(tokens, mask=attention_mask).tolist() == [2, 0]
    assert sentiment_reward(tokens).tolist() == [2, 0]
    with pytest.raises(ValueError, match="mask"):
        sentiment_reward(texts, mask=completion_mask)
    with pytest.raises(ValueError, match="shape"):
        sentiment_reward(tokens, mask=completion_mask[:, 1:])
    with pytest.raises(ValueError, match="clip"):
        sentiment_reward(texts, clip=0)


def test_review_reward_scores_well_formed_reviews_only():
    prompts = ["the food was"] * 6 + ["the staff were"]
    completions = ["great and the staff were kind .", "great kind .", "awful .", "fine and the food was great .",
                   "fine and the staff was great .", "great and the staff were kind", "lovely ."]
    assert review_reward(prompts, completions).tolist() == [2, -2, -1, -2, -2, -2, 1]
    assert not well_formed_review("the staff was kind .") and well_formed_review("the staff were kind .")
    with pytest.raises(ValueError, match="prompts"):
        review_reward(prompts, completions[:2])


def test_arithmetic_reward_checks_answer_and_format():
    prompts = ["two plus three is"] * 5 + ["zero plus ten is", "ten plus zero is"]
    completions = ["five .", "five five .", "five", "four .", "five . five", "ten .", "ten ."]
    assert arithmetic_reward(prompts, completions).tolist() == [1, 0, 0, 0, 0, 1, 1]
    assert [arithmetic_answer(p) for p in ("zero plus zero is", "four plus six is", "one plus seven is")] == [
        "zero", "ten", "eight"]
    with pytest.raises(ValueError, match="ten"):
        arithmetic_answer("six plus seven is")
    with pytest.raises(ValueError, match="arithmetic prompt"):
        arithmetic_answer("the food was")
    with pytest.raises(ValueError, match="completions"):
        arithmetic_reward(prompts, completions[:3])


# ------------------------------------------------------------------------------------------------ the model


def test_config_and_initialisation():
    with pytest.raises(ValueError, match="multiple"):
        TinyLMConfig(d_model=30)
    with pytest.raises(ValueError, match="dropout"):
        TinyLMConfig(dropout=1.0)
    a, b, c = TinyLM(seed=1), TinyLM(seed=1), TinyLM(seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.head.weight, c.head.weight)
    assert sum(p.numel() for p in a.parameters()) == 109_368
    assert abs(a.token_embedding.weight.std().item() - 0.02) < 0.002


def test_forward_shapes_and_causality(model):
    tokens = torch.tensor([encode("the food was great and the staff were kind .", eos=True)])
    logits, past = model(tokens)
    assert logits.shape == (1, 12, len(VOCAB)) and logits.dtype == torch.float32
    assert len(past) == 2 and past[0][0].shape == (1, 4, 12, 16)
    changed = tokens.clone()
    changed[0, 6] = TOKEN_ID["room"]
    changed_logits, _ = model(changed)
    torch.testing.assert_close(changed_logits[:, :6], logits[:, :6], rtol=0, atol=1e-6)  # the past ignores it
    assert (changed_logits[:, 6:] - logits[:, 6:]).abs().amax(dim=-1).min() > 1e-3  # the future sees it


def test_left_padding_does_not_change_the_logits(model):
    prompts = ["the food was", "two plus three is", "the waiters were great and the", "the"]
    tokens, attention_mask, _ = completion_batch(prompts, [[]] * len(prompts))
    batch_logits, _ = model(tokens, attention_mask)
    width = tokens.shape[1]
    for row, prompt in enumerate(prompts):
        alone = torch.tensor([encode(prompt)])
        alone_logits, _ = model(alone)
        n = alone.shape[1]
        assert torch.equal(tokens[row, width - n:], alone[0]) and not attention_mask[row, : width - n].any()
        torch.testing.assert_close(batch_logits[row, width - n:], alone_logits[0], rtol=0, atol=1e-5)


def test_kv_cache_gives_the_logits_of_a_full_forward_pass(model):
    tokens, attention_mask, _ = completion_batch(["the food was", "one plus two is", "the"],
                                                 ["fine and the bed was quiet .", "three .", "service was slow ."])
    full, _ = model(tokens, attention_mask)
    # the prompt part in one pass, then one token at a time, then the rest in a chunk of two and one of three
    split = [0, 5, 6, 7, 8, 10, tokens.shape[1]]
    past, pieces = None, []
    for start, end in zip(split, split[1:]):
        logits, past = model(tokens[:, start:end], attention_mask[:, :end], past)
        pieces.append(logits)
    incremental = torch.cat(pieces, dim=1)
    real = attention_mask
    torch.testing.assert_close(incremental[real], full[real], rtol=0, atol=1e-5)
    assert past[0][0].shape[2] == tokens.shape[1]


def test_forward_rejects_bad_input(model):
    tokens = torch.tensor([encode("the food was")])
    with pytest.raises(ValueError, match="int64"):
        model(tokens.float())
    with pytest.raises(ValueError, match="ids"):
        model(tokens + len(VOCAB))
    with pytest.raises(ValueError, match="bool"):
        model(tokens, torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        model(tokens, torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, 33, dtype=torch.long))
    _, past = model(tokens)
    with pytest.raises(ValueError, match="past_key_values"):
        model(tokens[:, :1].repeat(2, 1), past_key_values=past)


def test_hidden_states_feed_the_head_and_last_token_positions(model):
    tokens, attention_mask, _ = completion_batch(["the food was", "one plus two is"],
                                                 ["fine and the bed was quiet .", "three ."])
    hidden, _ = model.hidden_states(tokens, attention_mask)
    logits, _ = model(tokens, attention_mask)
    assert hidden.shape == (2, tokens.shape[1], 64)
    torch.testing.assert_close(model.head(hidden), logits)
    last = last_token_positions(attention_mask)
    assert last.tolist() == [tokens.shape[1] - 1, 5 + 2]  # "<eos>" of each row: prompts end at column 5
    assert tokens[0, last[0]] == EOS_ID and tokens[1, last[1]] == EOS_ID
    with pytest.raises(ValueError, match="no real token"):
        last_token_positions(torch.zeros(1, 3, dtype=torch.bool))


def test_reference_model_is_a_frozen_copy(model):
    policy = TinyLM(seed=3)
    reference = create_reference_model(policy)
    assert not any(p.requires_grad for p in reference.parameters()) and not reference.training
    tokens = torch.tensor([encode("the food was great .", eos=True)])
    before = reference(tokens)[0]
    with torch.no_grad():
        policy.head.weight.add_(1.0)
    torch.testing.assert_close(reference(tokens)[0], before, rtol=0, atol=0)
    assert not torch.allclose(policy(tokens)[0], before)


# ------------------------------------------------------------------------------------------------ sampling


def test_sample_layout_and_masks(model):
    prompts = ["the food was", "two plus three is", "the"]
    c = sample(model, prompts, 6, generator=torch.Generator().manual_seed(0), num_generations=4)
    B, L = c.tokens.shape
    assert isinstance(c, Completions) and B == 12 == len(c) and c.prompt_length == 5 and L <= 5 + 6
    assert c.tokens.dtype == torch.int64 and c.log_probs.dtype == torch.float32
    assert c.attention_mask.dtype == c.completion_mask.dtype == torch.bool
    assert c.prompt_texts() == [p for p in prompts for _ in range(4)] and c.prompt_index.tolist() == [
        i for i in range(3) for _ in range(4)]
    assert not c.completion_mask[:, : c.prompt_length].any()
    n_eos = 0
    for row in range(B):
        tokens, mask = c.tokens[row], c.completion_mask[row]
        eos = (tokens[c.prompt_length:] == EOS_ID).nonzero()
        end = c.prompt_length + int(eos[0]) + 1 if len(eos) else L  # one past <eos>, or the whole row
        n_eos += len(eos) > 0
        assert mask[c.prompt_length: end].all() and not mask[end:].any()
        assert (tokens[end:] == PAD_ID).all()
        # attention covers exactly the prompt's tokens and the completion
        prompt_tokens = encode(c.prompt_texts()[row])
        assert c.attention_mask[row].tolist() == [False] * (c.prompt_length - len(prompt_tokens)) + [True] * (
            end - c.prompt_length + len(prompt_tokens)) + [False] * (L - end)
        assert c.truncated[row].item() == (len(eos) == 0)
    assert 0 < n_eos < B  # the random model ends some rows early and not others: both layouts are tested
    assert (c.log_probs[~c.completion_mask] == 0).all() and (c.log_probs[c.completion_mask] < 0).all()
    assert [len(t) for t in c.completion_tokens()] == c.completion_mask.sum(dim=1).tolist()


def test_sample_log_probs_are_the_models_and_the_cache_changes_nothing(model):
    prompts = ["the food was", "two plus three is", "the", "the staff were fine but"]
    c = sample(model, prompts, 8, generator=torch.Generator().manual_seed(5), num_generations=3)
    recomputed = token_log_probs(model, c.tokens, c.attention_mask)
    assert recomputed.requires_grad
    torch.testing.assert_close(recomputed[c.completion_mask], c.log_probs[c.completion_mask], rtol=0, atol=1e-5)
    again = sample(model, prompts, 8, generator=torch.Generator().manual_seed(5), num_generations=3)
    assert torch.equal(again.tokens, c.tokens) and torch.equal(again.log_probs, c.log_probs)
    uncached = sample(model, prompts, 8, generator=torch.Generator().manual_seed(5), num_generations=3,
                      use_cache=False)
    assert torch.equal(uncached.tokens, c.tokens) and torch.equal(uncached.completion_mask, c.completion_mask)
    torch.testing.assert_close(uncached.log_probs, c.log_probs, rtol=0, atol=1e-5)
    other = sample(model, prompts, 8, generator=torch.Generator().manual_seed(6), num_generations=3)
    assert not torch.equal(other.tokens, c.tokens)
    # the layout is the one completion_batch builds from the same prompts and completions
    tokens, attention_mask, completion_mask = completion_batch([p for p in prompts for _ in range(3)],
                                                               c.completion_tokens())
    width = tokens.shape[1]
    assert torch.equal(tokens, c.tokens[:, :width]) and torch.equal(completion_mask, c.completion_mask[:, :width])
    assert torch.equal(attention_mask, c.attention_mask[:, :width])


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_sampled_tokens_follow_the_tempered_distribution(model, temperature):
    n = 4_000
    c = sample(model, ["the food was"], 1, temperature=temperature, generator=torch.Generator().manual_seed(0),
               num_generations=n)
    logits, _ = model(torch.tensor([encode("the food was")]))
    probs = torch.softmax(logits[0, -1] / temperature, dim=-1)
    counts = torch.bincount(c.tokens[:, -1], minlength=len(VOCAB)).float() / n
    # each frequency within 4 standard errors of its probability
    assert ((counts - probs).abs() <= 4 * (probs * (1 - probs) / n).sqrt() + 1e-3).all()
    # whatever the temperature, log_probs are those of the policy itself (temperature 1)
    torch.testing.assert_close(c.log_probs[:, -1], torch.log_softmax(logits[0, -1], -1)[c.tokens[:, -1]],
                               rtol=0, atol=1e-5)


def test_temperature_zero_is_greedy(model):
    c = sample(model, ["the food was", "three plus four is"], 5, temperature=0.0)
    for row in range(2):
        for t in range(c.prompt_length, c.tokens.shape[1]):
            if c.completion_mask[row, t]:
                logits, _ = model(c.tokens[row: row + 1, :t], c.attention_mask[row: row + 1, :t])
                assert c.tokens[row, t] == logits[0, -1].argmax()


def test_sample_rejects_bad_input(model):
    with pytest.raises(ValueError, match="no prompts"):
        sample(model, [], 3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        sample(model, ["the"], 0)
    with pytest.raises(ValueError, match="num_generations"):
        sample(model, ["the"], 3, num_generations=0)
    with pytest.raises(ValueError, match="temperature"):
        sample(model, ["the"], 3, temperature=-1.0)
    with pytest.raises(ValueError, match="max_len"):
        sample(model, ["the"], 40)
    with pytest.raises(ValueError, match="empty"):
        sample(model, [[]], 3)


# ----------------------------------------------------------------------------------------------- log-probabilities


def test_token_log_probs_sum_to_one_over_the_vocabulary(model):
    prefix = encode("the food was great and")
    V = len(VOCAB)
    # every possible next token after the same (left-padded) prefix
    tokens = torch.tensor([[PAD_ID] + prefix + [v] for v in range(V)])
    attention_mask = torch.ones_like(tokens, dtype=torch.bool)
    attention_mask[:, 0] = False
    log_p = token_log_probs(model, tokens, attention_mask)
    torch.testing.assert_close(log_p[:, -1].exp().sum(), torch.tensor(1.0), rtol=0, atol=1e-5)
    # nothing predicts position 0, the padding or the first real token (<bos>)
    assert (log_p[:, :2] == 0).all() and (log_p[:, 2:] < 0).all()
    # one row by hand
    logits, _ = model(tokens[:1], attention_mask[:1])
    by_hand = [torch.log_softmax(logits[0, t - 1], -1)[tokens[0, t]] for t in range(2, tokens.shape[1])]
    torch.testing.assert_close(log_p[0, 2:], torch.stack(by_hand), rtol=0, atol=1e-6)
    hot = token_log_probs(model, tokens, attention_mask, temperature=0.5)
    by_hand = torch.log_softmax(logits[0, -2] / 0.5, -1)[tokens[0, -1]]
    torch.testing.assert_close(hot[0, -1], by_hand, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        token_log_probs(model, tokens, attention_mask, temperature=0)


def test_sequence_log_probs_on_a_hand_worked_case():
    # vocabulary of 3; row: prompt [1, 2], completion [0, 2]
    logits = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [0.0, math.log(2), 0.0], [5.0, 5.0, 5.0]]],
                          requires_grad=True)
    tokens = torch.tensor([[1, 2, 0, 2]])
    mask = torch.tensor([[False, False, True, True]])
    # log p(0 | ., 1, 2) from logits[1] = [1, 2, 3]; log p(2 | ...) from logits[2] = [0, log 2, 0]
    expected = (1 - math.log(math.e + math.e**2 + math.e**3)) + math.log(1 / 4)
    result = sequence_log_probs(logits, tokens, mask)
    assert result.shape == (1,) and abs(result.item() - expected) < 1e-6
    result.sum().backward()
    assert (logits.grad[0, 0] == 0).all() and (logits.grad[0, 3] == 0).all()  # prompt and last logits unused
    with pytest.raises(ValueError, match="column 0|\\[:, 0\\]"):
        sequence_log_probs(logits, tokens, torch.tensor([[True, False, True, True]]))
    with pytest.raises(ValueError, match="bool"):
        sequence_log_probs(logits, tokens, mask.float())
    with pytest.raises(ValueError, match="logits"):
        sequence_log_probs(logits[0], tokens, mask)


def test_sequence_log_probs_sum_the_samplers_token_log_probs(model):
    c = sample(model, ["the food was", "the", "four plus four is"], 8, generator=torch.Generator().manual_seed(2),
               num_generations=2)
    logits, _ = model(c.tokens, c.attention_mask)
    seq = sequence_log_probs(logits, c.tokens, c.completion_mask)
    torch.testing.assert_close(seq, (c.log_probs * c.completion_mask).sum(dim=1), rtol=0, atol=1e-5)
    # float64 logits give float64 results
    assert sequence_log_probs(logits.double(), c.tokens, c.completion_mask).dtype == torch.float64


def test_sequence_reinforce_loss_value_and_gradient():
    seq_log_probs = torch.tensor([-1.0, -2.0, -3.0], requires_grad=True)
    rewards = torch.tensor([1.0, 0.0, 2.0], requires_grad=True)
    loss = sequence_reinforce_loss(seq_log_probs, rewards)
    # advantages [0, -1, 1]: loss = -(0 * -1 + -1 * -2 + 1 * -3) / 3 = 1/3
    assert abs(loss.item() - 1 / 3) < 1e-7
    loss.backward()
    torch.testing.assert_close(seq_log_probs.grad, torch.tensor([0.0, 1 / 3, -1 / 3]))
    assert rewards.grad is None  # the rewards and the baseline are detached
    one = sequence_reinforce_loss(torch.tensor([-1.0]), torch.tensor([5.0]))
    assert one.item() == 0
    with pytest.raises(ValueError, match="same shape"):
        sequence_reinforce_loss(seq_log_probs, rewards[:2])
    with pytest.raises(ValueError, match="tensors"):
        sequence_reinforce_loss(seq_log_probs, [1.0, 0.0, 2.0])


def test_next_token_loss_is_the_mean_cross_entropy_of_the_selected_tokens(model):
    tokens, attention_mask, completion_mask = completion_batch(["the food was", "two plus two is"],
                                                               ["fine .", "four ."])
    log_p = token_log_probs(model, tokens, attention_mask)
    all_targets = attention_mask[:, 1:] & attention_mask[:, :-1]
    torch.testing.assert_close(next_token_loss(model, tokens, attention_mask),
                               -log_p[:, 1:][all_targets].mean(), rtol=0, atol=1e-6)
    # supervised fine-tuning: the completion's tokens only
    torch.testing.assert_close(next_token_loss(model, tokens, attention_mask, completion_mask),
                               -log_p[completion_mask].mean(), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="no target"):
        next_token_loss(model, tokens, attention_mask, torch.zeros_like(completion_mask))


# ------------------------------------------------------------------------------------------------ training


def test_pretraining_lowers_the_loss():
    net = TinyLM(seed=4)
    losses = pretrain(net, make_corpus(500, seed=4), 60, seed=4, progress=False)
    assert len(losses) == 60
    assert losses[0] > math.log(len(VOCAB)) - 0.2  # about uniform at the start: ln 56 = 4.03
    assert sum(losses[-10:]) / 10 < losses[0] - 1.5
    assert losses == pretrain(TinyLM(seed=4), make_corpus(500, seed=4), 60, seed=4, progress=False)
    with pytest.raises(ValueError, match="positive"):
        pretrain(net, ["the food was fine ."], 0)


def test_pretrained_model_writes_the_corpus_with_its_mistakes(pretrained):
    again = pretrained_model(0)
    assert again is not pretrained
    assert all(torch.equal(p, q) for p, q in zip(again.parameters(), pretrained.parameters()))
    with torch.no_grad():
        again.head.bias.add_(1.0)  # training a copy leaves the cached weights alone
    assert all(torch.equal(p, q) for p, q in zip(pretrained_model(0).parameters(), pretrained.parameters()))

    reviews = sample(pretrained, review_prompts(), 10, generator=torch.Generator().manual_seed(0),
                     num_generations=20)
    assert sum(map(well_formed_review, reviews.texts())) / len(reviews) >= 0.85
    assert abs(sentiment_reward(reviews.completion_texts()).mean().item()) < 0.25  # room for REINFORCE to act
    # the corpus is right 70 % of the time: sampling is right about as often or less, greedy decoding more
    sampled = mean_reward(pretrained, arithmetic_prompts(), arithmetic_reward, num_generations=16)
    greedy = mean_reward(pretrained, arithmetic_prompts(), arithmetic_reward, temperature=0.0)
    assert 0.35 <= sampled <= 0.75 and greedy >= 0.8


def test_reinforce_raises_the_review_reward_for_every_seed(pretrained):
    for seed in range(3):
        result = reinforce_sequences(pretrained_model(0), review_prompts(), review_reward, 60, seed=seed,
                                     progress=False)
        assert len(result.mean_rewards) == len(result.losses) == 60
        first, last = sum(result.mean_rewards[:10]) / 10, sum(result.mean_rewards[-10:]) / 10
        assert last - first >= 0.6, (seed, first, last)
        assert len(result.samples_before) == len(result.samples_after) == 10
        prompts = review_prompts()
        after = review_reward(prompts, [t[len(p) + 1:] for p, t in zip(prompts, result.samples_after)])
        before = review_reward(prompts, [t[len(p) + 1:] for p, t in zip(prompts, result.samples_before)])
        assert after.mean() >= before.mean() + 0.5


def test_reinforce_rejects_bad_input(pretrained):
    with pytest.raises(ValueError, match="multiple"):
        reinforce_sequences(pretrained, review_prompts(), review_reward, 1, batch_size=10, num_generations=4)
    with pytest.raises(ValueError, match="reward_fn"):
        reinforce_sequences(pretrained_model(0), review_prompts(), lambda p, c: [1.0], 1, progress=False)
