"""The instructors' tools (staff only, never in a handout): the stubs generated from ``solutions/``, the
handout, the Gradescope autograder, and the mutants that prove the graded suites."""
