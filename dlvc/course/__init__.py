"""The ``dlvc`` command: ``submit`` for students; stubs, grading, the handout and the autograder for staff.

The handout holds only the students' modules (see :mod:`dlvc.course.cli`).
"""
