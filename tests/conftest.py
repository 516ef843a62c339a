import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The notebook of each chapter, by assignment id.
CHAPTERS = {
    "01_mdp": ROOT / "book" / "01_mdp" / "mdp.ipynb",
    "02_model_based": ROOT / "book" / "02_model_based" / "model_based.ipynb",
    "03_q_learning": ROOT / "book" / "03_q_learning" / "q_learning.ipynb",
    "04_policy_gradients": ROOT / "book" / "04_policy_gradients" / "policy_gradients.ipynb",
    "05_ppo_grpo": ROOT / "book" / "05_ppo_grpo" / "ppo_grpo.ipynb",
}
CHAPTER_1 = CHAPTERS["01_mdp"]


@pytest.fixture(scope="session")
def source_nb():
    return nbformat.read(CHAPTER_1, as_version=4)


@pytest.fixture(scope="session")
def source_nbs():
    return {chapter: nbformat.read(path, as_version=4) for chapter, path in CHAPTERS.items()}


@pytest.fixture(scope="session")
def released(tmp_path_factory):
    """The student release of every chapter, made by the CLI: {assignment: folder}."""
    out = tmp_path_factory.mktemp("release")
    run = subprocess.run([sys.executable, "-m", "autograder", "release", "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    return {p.name: p for p in out.iterdir() if p.is_dir()}


@pytest.fixture(scope="session")
def released_nb(released):
    return nbformat.read(released["01_mdp"] / "mdp.ipynb", as_version=4)


@pytest.fixture(scope="session")
def released_nbs(released):
    return {chapter: nbformat.read(released[chapter] / path.name, as_version=4)
            for chapter, path in CHAPTERS.items()}


def copy_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """The website, built as the README builds it (every chapter executed, `-W -n`): its `_build/html` folder.

    Built once per test session: the book tests and the browser tests look at the same build.
    """
    out = tmp_path_factory.mktemp("book")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    run = subprocess.run([str(jupyter_book), "build", str(ROOT), "--path-output", str(out), "-W", "-n",
                          "--keep-going"],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "TQDM_DISABLE": "1"})
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    return out / "_build" / "html"

