"""Helpers that build students' notebooks from the source and released notebooks, for the grading tests."""

from __future__ import annotations

import copy
import hashlib

import nbformat

from autograder.site import strip_solution_markers


def solution_sources(source_nb) -> dict[str, str]:
    """{grade_id: code} of the source notebook's answer cells, with the solution markers removed."""
    return {cell.metadata["nbgrader"]["grade_id"]: strip_solution_markers(cell.source)
            for cell in source_nb.cells
            if cell.metadata.get("nbgrader", {}).get("solution")}


def fill_in(released_nb, answers: dict[str, str]):
    """A copy of the released notebook with the answer cells named in ``answers`` replaced by that code."""
    nb = copy.deepcopy(released_nb)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return nb


def write(nb, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def tree_digest(root) -> str:
    """A digest of every path and file content under ``root`` (to show that grading changed nothing there)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()
