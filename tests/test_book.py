"""The website builds with every chapter executed and no warnings (`jupyter-book build . -W -n`), shows no hidden
tests and no unfolded solutions, and offers each chapter's student notebook."""

import re

import nbformat
import pytest
from nbgrader.utils import is_solution

from .conftest import CHAPTERS

pytestmark = pytest.mark.slow


def _chapter_page(site, chapter, notebook, *, images, answers):
    """The chapter's page, after checking it has figures, a widget's saved state, folded answers, no traceback."""
    page = (site / "book" / chapter / f"{notebook}.html").read_text(encoding="utf-8")
    assert len(re.findall(r"<img ", page)) >= images  # figures drawn by executed cells
    assert "application/vnd.jupyter.widget-state+json" in page
    assert page.count("tag_hide-input") >= answers  # every answer cell is collapsed behind a toggle
    assert "Traceback" not in page
    return page


def test_chapter_1_page_has_figures_widget_and_collapsed_solutions(site):
    page = _chapter_page(site, "01_mdp", "mdp", images=5, answers=7)
    assert "application/vnd.jupyter.widget-view+json" in page  # the explorer's view, beside its embedded state
    assert "1.1875" in page and "0.812" in page  # numbers computed on the page
    assert "v_2(1) = -1.75, printed -1.8" in page  # Figure 4.1: the tie that S&B print as -1.7
    assert "k = 2: every greedy action is optimal: False" in page
    assert "k = 3: every greedy action is optimal: True" in page  # Figure 4.1's greedy policies
    assert "ValueError: the starting policy is improper: from state(s) 1, 2, 3, 5, 6, 7" in page  # PI from up
    assert "step reward -0.01, gamma 1.0 : (3,2) ←, (4,1) ↓" in page  # the explorer's regimes
    assert "step reward -0.04, gamma 0.5 : (2,1) →, (3,1) ↑, (4,1) ↓" in page


def test_landing_page_links_every_chapter(site):
    index = (site / "book" / "intro.html").read_text(encoding="utf-8")
    assert "01_mdp/mdp.html" in index and "02_model_based/model_based.html" in index
    assert "03_q_learning/q_learning.html" in index and "04_policy_gradients/policy_gradients.html" in index


def test_chapter_3_page_has_figures_widget_and_the_reproduced_numbers(site):
    page = _chapter_page(site, "03_q_learning", "q_learning", images=6, answers=7)
    assert "pi*(sword, monster alive, wounded) = heal" in page  # the Q-table's greedy policy
    assert re.search(r"epsilon =  0\.1: steps 901-1000: average reward 1\.[34]", page)  # Figure 2.2
    assert re.search(r"q-learning epsilon\(s\) = 0\.5 / n\(s\): episodes 401-500 +-13\.\d ± 0\.\d", page)  # GLIE
    # confidence bands (mean +- 1.96 standard errors over the runs) and the comparisons the text draws from them
    assert re.search(r"epsilon = 0\.01: steps 901-1000: average reward 1\.2\d\d ± 0\.0\d\d", page)
    assert re.search(r"epsilon = 0\.1 +steps 901-1000: average reward 1\.3\d\d ± 0\.0\d\d; minus UCB.{1,6}s on "
                     r"the same problems -0\.1\d\d", page)
    assert re.search(r"sarsa +sum of rewards per episode, episodes 101-500: +-2\d\.\d ± \d\.\d", page)
    assert re.search(r"q-learning sum of rewards per episode, episodes 101-500: +-[45]\d\.\d ± \d\.\d", page)
    for claim in ("maximisation bias", "deadly triad", "episodic semi-gradient", "per-state schedule",
                  "\\mathbf{w}^-"):  # value-function weights are w (theta is for policy parameters)
        assert claim in page, claim
    for retracted in ("most widely used", "spiral", "UCB does best here", "it would pass"):
        assert retracted not in page, retracted


def test_chapter_2_page_has_figures_widget_and_the_reproduced_numbers(site):
    page = _chapter_page(site, "02_model_based", "model_based", images=8, answers=5)
    assert "first episode with a mean of at most 20 steps: 3" in page  # n = 50 in Figure 8.2
    assert "0.667" in page  # the lecture's estimate of p((2,3) | (1,3), right)
    assert "estimated p((3,1) | (2,1), left) = 1, true p = 0" in page  # the lecture's inconsistent step
    assert "episodes at which the two bands overlap: [43]" in page  # certainty equivalence vs Q-learning
    assert "the greedy path from S takes 14 steps to G" in page  # Figure 8.3, n = 50
    assert "20 of 20 runs found the shortcut, 121 to 1019 steps after it opened" in page  # Dyna-Q+
    assert "do not overlap: [3]" in page  # two rooms: linear model vs plain Q-learning


def test_chapter_4_page_has_figures_widget_and_the_reproduced_numbers(site):
    page = _chapter_page(site, "04_policy_gradients", "policy_gradients", images=6, answers=7)
    assert "exactly 2 - sqrt(2) = 0.5858, J = -11.657" in page  # Example 13.1
    assert "epsilon-greedy: J(0.05) = -82.1, J(0.95) = -44.2" in page
    # Figure 13.1: the larger the step size, the faster the median run learns
    early = {k: float(re.search(rf"alpha = 2\^-{k}: median run, episodes 1-100: +(-[\d.]+)", page).group(1))
             for k in (12, 13, 14)}
    assert early[12] > early[13] > early[14], early
    # Figure 13.2: with a baseline faster than without
    first = [float(x) for x in re.findall(r"median run, episodes 1-100: +(-[\d.]+); 901-1000", page)]
    assert len(first) == 3 and first[1] > first[0], first
    # CartPole: reward-to-go far above the whole return, the baseline's runs the least spread
    cartpole = {variant: tuple(float(x) for x in re.search(
        rf"{variant}: mean return over the last 10,000 steps +(\d+) ± +\d+; seeds: \[[\d ]+\], spread \(std\) +(\d+)",
        page).groups()) for variant in ("return", "reward_to_go", "baseline")}
    assert cartpole["reward_to_go"][0] > cartpole["return"][0] + 100, cartpole
    assert cartpole["baseline"][0] > 400 and cartpole["baseline"][1] < cartpole["reward_to_go"][1], cartpole
    # the language model: REINFORCE raises the review reward in every seed; the word score alone is hacked
    last = [float(x) for x in re.search(r"last: \[([-\d. ]+)\]", page).group(1).split()]
    assert len(last) == 5 and min(last) > 0.5, last
    assert "well-formed reviews among these samples: 0%" in page
    assert "reward hacking" in page and "log pi(completion | prompt)" in page


def test_chapter_5_page_has_figures_widget_and_the_reproduced_numbers(site):
    page = _chapter_page(site, "05_ppo_grpo", "ppo_grpo", images=5, answers=7)
    # Schulman et al. (2017), Figure 1: flat beyond 1 + eps for A > 0, never clipped above 1 for A < 0
    assert "A = +1: [0.5, 1.0, 1.2]  A = -1: [-0.8, -1.0, -1.5]" in page
    # GAE: variance grows from lambda = 0 to 1; the action-dependent bias vanishes at lambda = 1
    for critic in ("good critic", "poor critic"):
        variance_0, variance_1, bias_0, bias_1 = (float(x) for x in re.search(
            rf"{critic} \(σ = [\d.]+\): variance ([\d.]+) at λ = 0 -&gt; ([\d.]+) at λ = 1; \(action bias\)² "
            r"([\d.]+) -&gt; ([\d.]+)", page).groups())
        assert variance_1 > 4 * variance_0 and bias_0 > 0 and bias_1 < 1e-3, critic
    assert "poor critic (σ = 1.0)" in page and "smallest sum at λ = 0.8" in page
    # PPO on CartPole: the sampled policy of at least four of the five seeds reaches 475 within the run
    first = re.search(r"first evaluation of the sampled policy at &gt;= 475, per seed: \[([^\]]*)\]", page).group(1)
    assert len(first.split(",")) == 5 and first.count("None") <= 1, first
    # one large vanilla step collapses every trained policy; PPO's update moves the policy least
    vanilla_10 = re.search(r"vanilla alpha=10 +(\d+) +([\d.]+)", page).groups()
    clipped = re.search(r"ppo-clip 20 epochs +(\d+) +([\d.]+)", page).groups()
    unclipped = re.search(r"no clip 20 epochs +(\d+) +([\d.]+)", page).groups()
    assert float(vanilla_10[0]) < 50 and float(clipped[0]) > 400, (vanilla_10, clipped)
    assert float(clipped[1]) < float(unclipped[1]) < float(vanilla_10[1])
    # the length bias: "grpo" weighs a token of the 8-token completion a quarter of one of the 2-token one
    assert re.search(r"grpo +0 +2 +\+1.00 +-0.2500 +-0.5000", page) and re.search(r"grpo +1 +8 +-1.00 +\+0.0625", page)
    # GRPO on the language model: accuracy up for both betas; beta = 1 holds the KL lower; the loss stays at 0
    before = float(re.search(r"sampled accuracy before GRPO: training prompts ([\d.]+)", page).group(1))
    after = {beta: (float(a), float(kl)) for beta, a, kl in re.findall(
        r"beta = (\d): after 50 updates, training prompts ([\d.]+) .*?KL over the last 10 updates ([\d.]+)", page)}
    assert after["0"][0] > before + 0.1 and after["1"][0] > before + 0.05, (before, after)
    assert after["1"][1] < after["0"][1], after
    assert float(re.search(r"largest \|loss\| over all updates of all runs with beta = 0: ([\d.e+-]+)", page)
                 .group(1)) < 1e-6
    assert "page of its own" in page and "ppo_details.html" in page


def test_chapter_6_page_has_figures_widget_and_the_pipelines_numbers(site):
    page = _chapter_page(site, "06_rlhf", "rlhf", images=4, answers=7)
    assert "Recorded example" in page  # the preference widget's recorded ranking, fitted when the page was built
    # Christiano et al.: every rule learns from the comparisons (the start is about 20)
    finals = {rule: float(r) for rule, r in
              re.findall(r"(random|disagreement|true reward): final true return +(\d+)", page)}
    assert set(finals) == {"random", "disagreement", "true reward"} and min(finals.values()) > 50, finals
    # SFT helps; the labellers agree on 65-75 % of the pairs
    assert float(re.search(r"SFT beats the pre-trained model in ([\d.]+)", page).group(1)) > 0.6
    assert 0.65 <= float(re.search(r"two labellers agree on ([\d.]+) of the pairs", page).group(1)) <= 0.75
    # the reward model: >= 0.85 against the hidden preference, capped by the labels' noise against the labels
    hidden, labels, ceiling = (float(x) for x in re.search(
        r"held-out pairwise accuracy: ([\d.]+) against the hidden preference, ([\d.]+) against the labels \(the "
        r"hidden preference itself: ([\d.]+)", page).groups())
    assert hidden >= 0.85 and labels < ceiling < hidden, (hidden, labels, ceiling)
    # PPO, GRPO (and GRPO with the KL in the reward) and DPO beat the SFT model >= 75 % of the time
    wins = {name.strip(): float(w) for name, w in re.findall(r"([\w ,=.]+): win rate against SFT ([\d.]+)", page)}
    for name in ("PPO", "GRPO, beta = 0.3", "GRPO, KL in the reward"):
        assert wins[name] >= 0.75, wins
    dpo = re.search(r"DPO \(DPOConfig.*?win rate against SFT ([\d.]+)", page, re.S)
    assert float(dpo.group(1)) >= 0.75
    # plain DPO: its loss falls at both learning rates; at ten times the chapter's, both log-probabilities fall
    # far and the policy stops writing reviews
    runs = {lr: [float(x) for x in groups] for lr, *groups in re.findall(
        r"learning rate ([\d.]+): DPO loss ([\d.]+) -&gt; ([\d.]+), chosen ([-\d.]+) -&gt; ([-\d.]+), rejected "
        r"([-\d.]+) -&gt; ([-\d.]+) .*?well-formed ([\d.]+)", page)}
    assert set(runs) == {"0.002", "0.02"} and all(run[1] < run[0] for run in runs.values()), runs
    assert max(runs["0.02"][2:6]) < -15 and runs["0.02"][6] < 0.1, runs
    # over-optimisation: at beta = 0 the learned reward rises and every seed ends below the SFT model's hidden
    # score; at beta = 0.3 none does
    sft_hidden = float(re.search(r"SFT model(?:'|&#39;)s samples: learned reward [-\d.]+, hidden score "
                                 r"([-\d.]+)", page).group(1))
    sweep = {beta: [float(x) for x in groups] for beta, *groups in re.findall(
        r"beta = ([\d.]+): learned reward ([-\d.]+) -&gt; ([-\d.]+) \(first and last 10 updates\), hidden "
        r"([-\d.]+) -&gt; ([-\d.]+)", page)}
    assert sweep["0"][1] > sweep["0"][0] and sweep["0"][3] < sft_hidden, (sweep, sft_hidden)
    assert sweep["0.3"][3] > sft_hidden, (sweep, sft_hidden)
    below = dict(re.findall(r"beta = ([\d.]+): learned reward [^\n]*\n\s*seeds ending below the SFT "
                            r"model(?:'|&#39;)s hidden score: (\d) of 5", page))
    assert below["0"] == "5" and below["0.3"] == "0", below
    assert "trl_crosscheck.py" in page


def test_ppo_details_page_measures_each_detail_over_five_seeds(site):
    page = (site / "book" / "appendix" / "ppo_details.html").read_text(encoding="utf-8")
    assert "Traceback" not in page and len(re.findall(r"<img ", page)) >= 1
    rows = re.findall(r"\n(full|no [a-z ]+|truncation as termination) +(\d)/5", page)
    assert [name.strip() for name, _ in rows] == ["full", "no advantage normalisation", "no orthogonal initialisation",
                                          "no gradient clipping", "no annealing", "truncation as termination"]


def test_references_page_lists_the_works_cited(site):
    page = (site / "book" / "references.html").read_text(encoding="utf-8").lower()  # the style changes case
    assert "reinforcement learning: an introduction" in page and "dyna, an integrated architecture" in page


def test_landing_page_has_the_notation_table_and_the_instructor_guide(site):
    index = (site / "book" / "intro.html").read_text(encoding="utf-8")
    assert "instructors.html" in index and "<table" in index and "Notation" in index and "s_next" in index
    guide = (site / "book" / "instructors.html").read_text(encoding="utf-8")
    assert "zip_collect" in guide and "grades.csv" in guide


def test_no_hidden_test_solution_marker_or_instructor_notebook_anywhere_on_the_site(site):
    assert not (site / "_sources").exists()
    for path in site.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".js", ".ipynb", ".txt", ".json"):
            text = path.read_text(encoding="utf-8", errors="replace")
            for marker in ("HIDDEN TESTS", "hidden=True", "BEGIN SOLUTION", "END SOLUTION"):
                assert marker not in text, (path, marker)
    notebooks = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.ipynb"))
    assert notebooks == sorted(f"exercises/{chapter}/{path.name}" for chapter, path in CHAPTERS.items())


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_chapter_page_links_its_student_notebook_made_as_release_makes_it(site, chapter, source_nbs, released_nbs):
    path = CHAPTERS[chapter]
    page_path = site / "book" / chapter / path.with_suffix(".html").name
    page = page_path.read_text(encoding="utf-8")
    link = re.search(r'class="download-exercises-link[^"]*" href="([^"]+)"', page).group(1)
    offered = nbformat.read((page_path.parent / link).resolve(), as_version=4)
    assert [c.source for c in offered.cells] == [c.source for c in released_nbs[chapter].cells]
    assert "raise NotImplementedError()" in offered.cells[next(i for i, c in enumerate(source_nbs[chapter].cells)
                                                               if is_solution(c))].source
    # each answer cell is folded behind a "Show solution" toggle
    assert page.count("Show solution") == sum(is_solution(c) for c in source_nbs[chapter].cells)
