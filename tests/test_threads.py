"""solutions.threads: torch runs on one thread inside, and the caller's setting is restored after."""

import torch

from solutions.dqn import DQNConfig, train_dqn
from solutions.threads import single_threaded


def test_single_threaded_sets_one_thread_and_restores_the_callers_setting():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with single_threaded():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2

        @single_threaded()
        def inside():
            raise RuntimeError(torch.get_num_threads())

        try:
            inside()
        except RuntimeError as error:
            assert error.args == (1,)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_train_dqn_gives_the_same_numbers_on_one_thread_as_on_two():
    config = DQNConfig(n_steps=1_200, learning_starts=200, eval_every=1_200, eval_episodes=2)
    one = train_dqn(3, config, progress=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        reference = [p.detach().clone() for p in one.q_network.parameters()]
        two = train_dqn(3, config, progress=False)  # single_threaded inside, whatever the caller set
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert one.eval_returns == two.eval_returns
    assert all(torch.equal(a, b) for a, b in zip(reference, two.q_network.parameters()))
