"""Instructor and teaching-assistant tooling behind the ``dlvc`` command."""
