"""The grading side of the course-book: releases student notebooks, grades submissions with nbgrader,
and lets students validate their work (``python -m autograder --help``)."""
