"""The graded suites: never shipped to students (see dlvc/course/grader/graded.py)."""
