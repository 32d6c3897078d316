"""The ``dlvc`` command: ``submit`` for students; stubs, grading, the handout and the autograder for staff.

Laid out by trust: ``student/`` (the students' tools, the only part a handout holds besides ``cli.py``),
``grader/`` (the trusted grader), ``sandboxed/`` (what runs beside the student's code, confined) and
``authoring/`` (the instructors' tools). See :mod:`dlvc.course.cli`.
"""
