"""PPO on CartPole-v1 (Chapter 5): the issue's target, side by side with Stable-Baselines3's PPO, and the cost of
the chapter's PPO figures.

Usage:
    python benchmarks/ppo_cartpole.py [--seeds N] [--ablation] [--collapse]

To run the Stable-Baselines3 half too, install it into a separate environment (it is not part of the book's):
    python -m venv /tmp/sb3env
    /tmp/sb3env/bin/pip install -r requirements.txt -r benchmarks/requirements-sb3.txt
    /tmp/sb3env/bin/python benchmarks/ppo_cartpole.py
Without stable_baselines3 the script runs our half and says how to get the other.

1. Target (issue 14): the sampled policy's mean return over 20 evaluation episodes reaches 475 within 50,000
   environment steps for at least 4 of 5 seeds; and our training uses no more CPU time than Stable-Baselines3's.
   Both sides train with the same hyper-parameters (rl-baselines3-zoo's for CartPole-v1: 8 environments x 32
   steps, 20 epochs, minibatch 256, gamma 0.98, lambda 0.8, Adam 1e-3 and clip range 0.2 both decayed linearly to
   0, no entropy bonus, vf_coef 0.5, max_grad_norm 0.5, 64-64 tanh actor and critic, orthogonal initialisation),
   the same schedule ((1 - (k - 1) / U) at update k of U = 196, given to SB3 as a schedule of its "progress
   remaining"), the same environment seeds (environment i of seed s starts with seed s + i), and the same
   evaluation protocol: every 512 steps (2 updates), after the update, 20 episodes of the sampled policy with
   solutions.policy_gradients.evaluate_cartpole_policy and evaluation seed 10,000 + step (the same episodes and
   action draws for both sides; for SB3 an evaluation callback at the start of each rollout, i.e. after the
   previous update). Training CPU time excludes the evaluations on both sides (and includes building the networks
   and environments). torch runs on one thread on both sides. Prints per seed and the medians over the seeds, and
   the ratios SB3 / ours.
2. --ablation: the ablation as the chapter runs it (solutions.ppo_cartpole.ppo_ablation with the arguments of
   NOTEBOOK_ABLATION below), its CPU time (all processes) and wall time, and what each detail does: steps to 475,
   the final evaluation, the area under the curve.
3. --collapse: the one-large-step demonstration (solutions.ppo_cartpole.one_step_collapse) on the trained
   policies of the ablation's full-configuration runs (so it runs the ablation of 2. first), its CPU time and
   its table.
"""

import argparse
import math
import statistics
import time

import numpy as np
import torch

from solutions.policy_gradients import evaluate_cartpole_policy
from solutions.ppo_cartpole import PPOConfig, evaluation_seed, one_step_collapse, ppo_ablation, train_ppo
from timing import cpu_all

LEVEL = 475.0
TOTAL_STEPS = 50_000
EVAL_EVERY = 512
EVAL_EPISODES = 20
#: what the chapter's ablation figure runs (solutions.ppo_cartpole.ppo_ablation)
NOTEBOOK_ABLATION = {"seeds": range(5), "total_steps": 20_480, "eval_every": 2048, "eval_greedy": False,
                     "snapshot_steps": (8192,), "n_jobs": 2}
#: what the chapter's one-large-step table runs on those policies (solutions.ppo_cartpole.one_step_collapse)
NOTEBOOK_COLLAPSE = {}


def first_reaching(steps, returns, level: float = LEVEL):
    return next((s for s, r in zip(steps, returns, strict=True) if r >= level), None)


def ours(seed: int, config: PPOConfig) -> dict:
    start = time.perf_counter()
    run = train_ppo(config, TOTAL_STEPS, seed, eval_every=EVAL_EVERY, eval_episodes=EVAL_EPISODES,
                    eval_greedy=False, progress=False)
    wall = time.perf_counter() - start
    steps = run.total_steps
    final = (run.eval_sampled[-1], evaluate_cartpole_policy(run.policy, EVAL_EPISODES, evaluation_seed(steps),
                                                            greedy=True))
    return {"first": run.first_step_reaching(LEVEL), "cpu": run.cpu_seconds, "eval_cpu": run.eval_cpu_seconds,
            "wall": wall, "steps": list(run.eval_steps), "returns": list(run.eval_sampled), "final": final,
            "total_steps": steps}


def sb3(seed: int, config: PPOConfig, total_steps: int = TOTAL_STEPS) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    class Logits(torch.nn.Module):
        """SB3's policy as a map from states to action logits, for evaluate_cartpole_policy."""

        def __init__(self, policy):
            super().__init__()
            self.policy = policy

        def forward(self, states):
            return self.policy.get_distribution(states).distribution.logits

    class SampledPolicyEvaluation(BaseCallback):
        """Evaluates the sampled policy after every update whose step count is a multiple of EVAL_EVERY (at the
        start of the next rollout, or at the end of training), and before training, like train_ppo."""

        def __init__(self):
            super().__init__()
            self.steps, self.returns, self.cpu = [], [], 0.0

        def evaluate(self):
            start = time.process_time()
            self.steps.append(self.num_timesteps)
            self.returns.append(evaluate_cartpole_policy(Logits(self.model.policy), EVAL_EPISODES,
                                                         evaluation_seed(self.num_timesteps)))
            self.cpu += time.process_time() - start

        def _on_training_start(self):
            self.evaluate()

        def _on_rollout_start(self):
            if self.num_timesteps > 0 and self.num_timesteps % EVAL_EVERY == 0 \
                    and self.steps[-1] != self.num_timesteps:
                self.evaluate()

        def _on_training_end(self):
            if self.num_timesteps % EVAL_EVERY == 0 and self.steps[-1] != self.num_timesteps:
                self.evaluate()

        def _on_step(self):
            return True

    n_updates = math.ceil(total_steps / config.batch_size)

    def fraction(progress_remaining: float) -> float:
        # SB3 calls this at update k with progress_remaining = 1 - k / U; train_ppo uses 1 - (k - 1) / U.
        return min(1.0, progress_remaining + 1.0 / n_updates)

    start, cpu_start = time.perf_counter(), time.process_time()
    env = make_vec_env("CartPole-v1", n_envs=config.num_envs, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=config.num_steps, batch_size=config.minibatch_size,
                n_epochs=config.n_epochs, gamma=config.gamma, gae_lambda=config.lam,
                learning_rate=lambda p: config.learning_rate * fraction(p),
                clip_range=lambda p: config.cliprange * fraction(p), ent_coef=config.ent_coef,
                vf_coef=config.vf_coef, max_grad_norm=config.max_grad_norm, seed=seed, device="cpu", verbose=0)
    callback = SampledPolicyEvaluation()
    model.learn(total_timesteps=n_updates * config.batch_size, callback=callback)
    cpu = time.process_time() - cpu_start - callback.cpu
    wall = time.perf_counter() - start
    steps = model.num_timesteps
    final = (callback.returns[-1], evaluate_cartpole_policy(Logits(model.policy), EVAL_EPISODES,
                                                            evaluation_seed(steps), greedy=True))
    return {"first": first_reaching(callback.steps, callback.returns), "cpu": cpu, "eval_cpu": callback.cpu,
            "wall": wall, "steps": callback.steps, "returns": callback.returns, "final": final,
            "total_steps": steps}


def held(run: dict) -> float:
    """Share of the evaluations after the first one >= 475 that are >= 475 too (NaN if never reached)."""
    if run["first"] is None:
        return math.nan
    after = [r for s, r in zip(run["steps"], run["returns"], strict=True) if s > run["first"]]
    return float(np.mean([r >= LEVEL for r in after])) if after else math.nan


def report(name: str, runs: list[dict]) -> None:
    for seed, run in enumerate(runs):
        print(f"  {name} seed {seed}: first >= {LEVEL:g} at {run['first']} steps; training {run['cpu']:.1f} s CPU "
              f"(evaluations {run['eval_cpu']:.1f} s CPU), {run['wall']:.1f} s wall in all; final evaluation "
              f"sampled {run['final'][0]:.0f}, greedy {run['final'][1]:.0f}; >= {LEVEL:g} in "
              f"{held(run):.0%} of the evaluations after the first", flush=True)
    reached = [r["first"] for r in runs if r["first"] is not None and r["first"] <= TOTAL_STEPS]
    firsts = [r["first"] if r["first"] is not None else math.inf for r in runs]
    cpu, wall = statistics.median(r["cpu"] for r in runs), statistics.median(r["wall"] for r in runs)
    print(f"  {name}: {len(reached)} of {len(runs)} seeds reached {LEVEL:g} within {TOTAL_STEPS} steps; median "
          f"first step {statistics.median(firsts)}; median training CPU {cpu:.1f} s, median wall (with "
          f"evaluations) {wall:.1f} s", flush=True)


def comparison(n_seeds: int) -> None:
    torch.set_num_threads(1)
    config = PPOConfig()
    try:
        import stable_baselines3
    except ImportError:
        stable_baselines3 = None
    n_updates = math.ceil(TOTAL_STEPS / config.batch_size)
    print(f"1. PPO on CartPole-v1, {n_seeds} seeds x {TOTAL_STEPS} steps ({n_updates} updates, "
          f"{n_updates * config.batch_size} steps), sampled policy evaluated every {EVAL_EVERY} steps over "
          f"{EVAL_EPISODES} episodes", flush=True)
    train_ppo(config, 512, 0, eval_every=None, progress=False)  # imports and first calls, untimed
    runs = {"ours": [ours(seed, config) for seed in range(n_seeds)]}
    report("ours", runs["ours"])
    if stable_baselines3 is None:
        print("  Stable-Baselines3 is not installed here: for the side-by-side comparison run this script in an "
              "environment made with\n    python -m venv /tmp/sb3env && /tmp/sb3env/bin/pip install -r "
              "requirements.txt -r benchmarks/requirements-sb3.txt\n  and /tmp/sb3env/bin/python "
              "benchmarks/ppo_cartpole.py")
        return
    print(f"  Stable-Baselines3 {stable_baselines3.__version__}, torch {torch.__version__}", flush=True)
    sb3(0, config, total_steps=512)  # imports and first calls, untimed
    runs["sb3"] = [sb3(seed, config) for seed in range(n_seeds)]
    report("SB3", runs["sb3"])
    cpu = {name: statistics.median(r["cpu"] for r in rs) for name, rs in runs.items()}
    first = {name: statistics.median(r["first"] if r["first"] is not None else math.inf for r in rs)
             for name, rs in runs.items()}
    print(f"  medians over {n_seeds} seeds: first step >= {LEVEL:g} ours {first['ours']}, SB3 {first['sb3']} "
          f"(SB3 / ours {first['sb3'] / first['ours']:.2f}); training CPU ours {cpu['ours']:.1f} s, SB3 "
          f"{cpu['sb3']:.1f} s (SB3 / ours {cpu['sb3'] / cpu['ours']:.2f})", flush=True)


def ablation_and_collapse(do_ablation: bool, do_collapse: bool) -> None:
    kwargs = dict(NOTEBOOK_ABLATION)
    details = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    print(f"2. the ablation as the chapter runs it: ppo_ablation({details})", flush=True)
    cpu, start = cpu_all(), time.perf_counter()
    results = ppo_ablation(progress=False, **kwargs)
    cpu, wall = cpu_all() - cpu, time.perf_counter() - start
    print(f"  {cpu:.1f} s CPU (all processes), {wall:.1f} s wall", flush=True)
    if do_ablation:
        for name, result in results.items():
            curve = result["eval_sampled"]
            firsts = ", ".join("-" if np.isnan(f) else f"{f:.0f}" for f in result["first_step"])
            print(f"  {name:>30}: first step >= {LEVEL:g} per seed {firsts}; final sampled evaluation "
                  f"{np.round(curve[:, -1]).astype(int).tolist()}; mean evaluation over the run "
                  f"{np.nanmean(curve):.0f}; training CPU per run {np.median(result['cpu_seconds']):.1f} s "
                  f"(median), evaluations {np.median(result['eval_cpu_seconds']):.1f} s", flush=True)
    if do_collapse:
        print(f"3. one large step: one_step_collapse(the full configuration's runs, {NOTEBOOK_COLLAPSE})",
              flush=True)
        cpu, start = time.process_time(), time.perf_counter()
        table = one_step_collapse(results["full"]["results"], progress=False, **NOTEBOOK_COLLAPSE)
        print(f"  {time.process_time() - cpu:.1f} s CPU, {time.perf_counter() - start:.1f} s wall; mean return "
              f"before: {np.round(table['return_before']).astype(int).tolist()}", flush=True)
        for label, returns, kl in zip(table["labels"], table["return_after"], table["kl"], strict=True):
            print(f"  {label:>24}: return after {np.round(returns).astype(int).tolist()} (median "
                  f"{np.median(returns):.0f}), KL(old || new) median {np.median(kl):.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--ablation", action="store_true", help="the chapter's ablation: cost and results")
    parser.add_argument("--collapse", action="store_true", help="the chapter's one-large-step table: cost")
    parser.add_argument("--skip-comparison", action="store_true", help="skip part 1")
    args = parser.parse_args()
    if not args.skip_comparison:
        comparison(args.seeds)
    if args.ablation or args.collapse:
        ablation_and_collapse(args.ablation, args.collapse)


if __name__ == "__main__":
    main()
