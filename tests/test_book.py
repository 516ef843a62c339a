"""The website builds with every chapter executed and no warnings (`jupyter-book build . -W`)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    run = subprocess.run([str(jupyter_book), "build", str(ROOT), "--path-output", str(out), "-W", "--keep-going"],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "TQDM_DISABLE": "1"})
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    return out / "_build" / "html"


def test_chapter_1_page_has_figures_widget_and_collapsed_solutions(site):
    page = (site / "book" / "01_mdp" / "mdp.html").read_text(encoding="utf-8")
    assert len(re.findall(r"<img ", page)) >= 5  # figures drawn by executed cells
    assert "application/vnd.jupyter.widget-view+json" in page  # the explorer's view ...
    assert "application/vnd.jupyter.widget-state+json" in page  # ... and its embedded state
    assert page.count("tag_hide-input") >= 7  # every answer cell is collapsed behind a toggle
    assert "Traceback" not in page
    assert "1.1875" in page and "0.812" in page  # numbers computed on the page


def test_landing_page_links_every_chapter(site):
    index = (site / "book" / "intro.html").read_text(encoding="utf-8")
    assert "01_mdp/mdp.html" in index and "02_model_based/model_based.html" in index
    assert "03_q_learning/q_learning.html" in index


def test_chapter_3_page_has_figures_widget_and_the_reproduced_numbers(site):
    page = (site / "book" / "03_q_learning" / "q_learning.html").read_text(encoding="utf-8")
    assert len(re.findall(r"<img ", page)) >= 6
    assert "application/vnd.jupyter.widget-state+json" in page
    assert page.count("tag_hide-input") >= 7
    assert "Traceback" not in page
    assert "pi*(sword, monster alive, wounded) = heal" in page  # the Q-table's greedy policy
    assert re.search(r"epsilon =  0\.1: steps 901-1000: average reward 1\.[34]", page)  # Figure 2.2


def test_chapter_2_page_has_figures_widget_and_the_reproduced_numbers(site):
    page = (site / "book" / "02_model_based" / "model_based.html").read_text(encoding="utf-8")
    assert len(re.findall(r"<img ", page)) >= 5
    assert "application/vnd.jupyter.widget-state+json" in page
    assert page.count("tag_hide-input") >= 5
    assert "Traceback" not in page
    assert "first episode with a mean of at most 20 steps: 3" in page  # n = 50 in Figure 8.2
    assert "0.667" in page  # the lecture's estimate of p((2,3) | (1,3), right)


def test_references_page_lists_the_works_cited(site):
    page = (site / "book" / "references.html").read_text(encoding="utf-8").lower()  # the style changes case
    assert "reinforcement learning: an introduction" in page and "dyna, an integrated architecture" in page
