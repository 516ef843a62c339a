"""Settings shared by the autograder's commands and its nbgrader configuration."""

from pathlib import Path

#: The nbgrader course id.
COURSE_ID = "rl-course-book"

#: Where the instructor's source notebooks live: ``book/<assignment>/<notebook>.ipynb``.
BOOK_DIR = Path(__file__).resolve().parent.parent / "book"

#: Default per-cell time limit (seconds) when executing a submission.
DEFAULT_CELL_TIMEOUT = 60

#: stderr output matching this regular expression does not cost points: Python warnings
#: ("...: SomeWarning: ...") and tqdm progress bars ("40%|####").
HARMLESS_STDERR = r"(\w+Warning: |\d+%\|)"

#: Files of a submission that are never put next to the notebook being graded (they could shadow our
#: packages or run code at import time).
IGNORED_SUBMISSION_FILES = ["*.py", "*.pyx", "*.so", "*.pth", "*.pyd"]

#: Environment of the kernel that runs a submission (grading and ``validate``): figures are not rendered
#: (matplotlib's non-drawing "agg" backend: nobody looks at them, and drawing takes a third of Chapter 1's
#: run time), progress bars are off, and torch and NumPy's BLAS use one thread (the book's networks are small:
#: on a busy 2-core machine two threads made DQN training ten times slower; see ``solutions/threads.py``).
GRADING_KERNEL_ENV = {"MPLBACKEND": "agg", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}

#: Code cells of a source notebook with this tag are not run while grading (``grade`` and ``validate``): long
#: narrative experiments whose figures nobody grades, such as Chapter 3's DQN training run. The book build
#: still runs them. The grader honours the tag only on a cell whose source is exactly that of a tagged cell
#: of the release and that is not an nbgrader cell, so a student can neither skip a test nor skip code of
#: their own; ``tests/test_notebooks.py`` checks that no cell needs a name that only a skipped cell defines.
SKIP_WHEN_GRADING = "skip-when-grading"
