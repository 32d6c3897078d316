"""What grading one submission produces: a verdict per graded test, and the points they add up to.

The graded suite (``tests/hidden/assignment<N>``) reports one :class:`Verdict` per
graded test; :class:`SubmissionResult` gathers them with what staging found
(missing files, skipped entries) and adds up the points per part of the manifest.
A test whose verdict never arrived is a failed verdict with the reason
(:func:`missing_verdict`): grading fails closed.
"""

from dataclasses import dataclass, field

from ..student.manifest import Manifest, SubmissionFile


@dataclass(frozen=True)
class GradedTest:
    """One graded test of a suite, as its marker declares it."""

    nodeid: str
    title: str
    part: str
    points: float

    def to_json(self) -> dict:
        return {"nodeid": self.nodeid, "title": self.title, "part": self.part, "points": self.points}

    @classmethod
    def from_json(cls, data: dict) -> "GradedTest":
        return cls(str(data["nodeid"]), str(data["title"]), str(data["part"]), float(data["points"]))


@dataclass(frozen=True)
class Verdict:
    """The outcome of one graded test: passed or not, and what a student reads when not."""

    test: GradedTest
    passed: bool
    message: str = ""
    seconds: float | None = None

    @property
    def points(self) -> float:
        return self.test.points if self.passed else 0.0

    def to_json(self) -> dict:
        return {"nodeid": self.test.nodeid, "passed": self.passed, "message": self.message, "seconds": self.seconds}


def missing_verdict(test: GradedTest, reason: str) -> Verdict:
    """The failed verdict of a test that reported nothing, saying why."""
    return Verdict(test, passed=False, message=f"no verdict: {reason}")


@dataclass
class SubmissionResult:
    """Everything grading found out about one submission.

    Attributes:
        name: the submission's name (a zip's stem or a folder's name).
        seed: the grading run's seed, which drew every random input.
        verdicts: one per graded test of the suite, in the suite's order.
        missing: the files the manifest asks for that the submission lacks.
        notes: what staging skipped or renamed (unsafe zip entries, caches).
        error: why the submission could not be graded at all, or None.
        isolation: the isolation mode its student code ran in (``bwrap``, ``landlock``,
            ``process``; see :mod:`dlvc.course.grader.isolation`).
    """

    name: str
    seed: int
    verdicts: list[Verdict]
    missing: list[SubmissionFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    isolation: str = ""

    def part_points(self, manifest: Manifest) -> dict[str, float]:
        """Points earned per part id: the passed tests' points, less what missing files cost (never below 0)."""
        earned = {part.id: 0.0 for part in manifest.parts}
        for verdict in self.verdicts:
            earned[verdict.test.part] += verdict.points
        for entry in self.missing:
            if entry.part is not None:
                earned[entry.part] = max(0.0, earned[entry.part] - entry.points)
        return earned

    def total(self, manifest: Manifest) -> float:
        return sum(self.part_points(manifest).values())

    def failed(self) -> list[Verdict]:
        return [verdict for verdict in self.verdicts if not verdict.passed]
