"""Assignment 3's graded suite; its points are in assignments/assignment3/assignment.toml."""
