"""Reference implementations for the RL course-book.

The book's narrative cells import from here, so every chapter runs and draws its figures whether or not the
reader has done the exercises, and the autograder checks students' functions against these.
"""
