"""Assignment 1's graded suite; its points are in assignments/assignment1/assignment.toml."""
