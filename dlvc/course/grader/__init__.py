"""The trusted grader (staff only, never in a handout): ``dlvc grade``, the pytest plugin of the graded suites,
expectations, verdicts, reports, the warm runner, the leaderboard, and the grader's side of the sandbox.

Nothing here imports a student's code: it reaches it only through :mod:`dlvc.course.grader.sandbox`, which
talks plain data to the sandboxed side (:mod:`dlvc.course.sandboxed`).
"""
