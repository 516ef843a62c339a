"""Checks that the notebooks' test cells call: one module per chapter (``autograder.checks.mdp``, ...)."""
