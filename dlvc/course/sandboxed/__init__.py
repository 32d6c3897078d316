"""The sandboxed side of grading: what runs beside a student's code, confined (staff only, never in a handout).

The fork server and its workers (``worker.py``), their confinement (``confine.py``), the wire format
(``wire.py``) and the probes a graded test may build in a worker (``probes.py``). These files import only the
standard library, torch and each other, so that they run as plain scripts inside the sandbox, where ``dlvc`` is
the student's package (``tests/test_sandbox.py`` checks it).
"""
