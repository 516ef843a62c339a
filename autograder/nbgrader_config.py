"""nbgrader configuration for the course-book; the autograder copies it into each course directory it lays out.

Options the command line sets per run (cell time-out, gradebook URL) are passed as flags, not set here.
"""

from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader.preprocessors import (
                                       AssignLatePenalties,
                                       CheckCellMetadata,
                                       IgnorePattern,
                                       LimitOutput,
                                       SaveAutoGrades,
)

from autograder.preprocessors import GradingExecute, GuardScores
from autograder.settings import COURSE_ID, HARMLESS_STDERR, IGNORED_SUBMISSION_FILES, SKIP_WHEN_GRADING

c = get_config()  # noqa: F821 -- provided by traitlets when nbgrader loads this file

c.CourseDirectory.course_id = COURSE_ID
# Files a submission may contain that are never copied next to the notebook being graded: a student's
# `solutions.py` or `autograder.py` would otherwise shadow our packages.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", *IGNORED_SUBMISSION_FILES]

# A test cell that a student deleted is put back from the source notebook before grading.
c.OverwriteCells.add_missing_cells = True

# A cell that runs too long is interrupted; the notebook goes on with the next cell.
c.Execute.interrupt_on_timeout = True
c.Execute.execute_retries = 0
# Long narrative experiments are not run while grading (the grader decides which cells keep this tag).
c.Execute.skip_cells_with_tag = SKIP_WHEN_GRADING

# nbgrader gives 0 points to a cell with any stderr output. Warnings and progress bars are harmless:
# drop them before grades are computed.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = HARMLESS_STDERR

# nbgrader's autograde steps, with two changes (autograder/preprocessors.py): execution caps each cell's printed
# output, and a test cell whose score is missing or not a number from 0 to its points gets 0 (nbgrader would
# give full credit to a cell with no output or a non-numeric one).
c.Autograde.autograde_preprocessors = [GradingExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                       GuardScores, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
