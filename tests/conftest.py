import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parent.parent
#: The notebook of each chapter, by assignment id.
CHAPTERS = {
    "01_mdp": ROOT / "book" / "01_mdp" / "mdp.ipynb",
    "02_model_based": ROOT / "book" / "02_model_based" / "model_based.ipynb",
    "03_q_learning": ROOT / "book" / "03_q_learning" / "q_learning.ipynb",
    "04_policy_gradients": ROOT / "book" / "04_policy_gradients" / "policy_gradients.ipynb",
    "05_ppo_grpo": ROOT / "book" / "05_ppo_grpo" / "ppo_grpo.ipynb",
    "06_rlhf": ROOT / "book" / "06_rlhf" / "rlhf.ipynb",
}
CHAPTER_1 = CHAPTERS["01_mdp"]


@pytest.fixture(scope="session")
def source_nb():
    return nbformat.read(CHAPTER_1, as_version=4)


@pytest.fixture(scope="session")
def source_nbs():
    return {chapter: nbformat.read(path, as_version=4) for chapter, path in CHAPTERS.items()}


def shared_output(tmp_path_factory, name: str, command: list[str], env=None) -> Path:
    """Run `command` (which writes into the folder it is given as its last argument) once per test run.

    pytest-xdist runs the tests in several worker processes, each with its own session fixtures; the first
    worker to need `name` runs the command under a file lock in the folder all workers share, and the others
    wait and reuse its output (pytest-xdist's documented pattern for session-scoped data). A failed command
    fails every test that needs it, with the command's output.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this run
    out = base / name
    status = base / f"{name}.status"
    with FileLock(str(base / f"{name}.lock")):
        if not status.exists():
            if out.exists():
                shutil.rmtree(out)
            out.mkdir()
            run = subprocess.run(command + [str(out)], capture_output=True, text=True, cwd=ROOT, env=env)
            status.write_text(f"{run.returncode}\n" + (run.stdout + run.stderr)[-5000:])
    code, _, log = status.read_text().partition("\n")
    assert code == "0", log
    return out


@pytest.fixture(scope="session")
def released(tmp_path_factory):
    """The student release of every chapter, made by the CLI: {assignment: folder}."""
    out = shared_output(tmp_path_factory, "release",
                        [sys.executable, "-m", "autograder", "release", "--out"])
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

    Built once per test run, whatever the number of xdist workers: the book tests and the browser tests look at
    the same build.
    """
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    out = shared_output(tmp_path_factory, "book",
                        [str(jupyter_book), "build", str(ROOT), "-W", "-n", "--keep-going", "--path-output"],
                        env={**os.environ, "TQDM_DISABLE": "1"})
    return out / "_build" / "html"

