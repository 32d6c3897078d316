"""The ``dlvc`` command: course tooling for instructors and teaching assistants.

    dlvc stubs            regenerate the student stubs in dlvc/ from solutions/
    dlvc stubs --check    exit 1 and list the stubs that differ from solutions/
    dlvc grade SUBMISSION... --assignment N --out DIR [--jobs J] [--seed S]
                          grade a class with the hidden suite (see dlvc/course/grade.py)
"""

import argparse
import sys
from pathlib import Path

from . import grade
from .stubs import MarkerError, generate_stubs

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dlvc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    stubs = commands.add_parser("stubs", help="generate the student stubs in dlvc/ from solutions/")
    stubs.add_argument("--root", type=Path, default=REPOSITORY_ROOT, help="repository root holding solutions/ and dlvc/ (default: %(default)s)")
    stubs.add_argument("--check", action="store_true", help="write nothing; exit 1 if any stub differs from what solutions/ generates")
    grading = commands.add_parser(
        "grade", help="grade submissions with an assignment's hidden suite", description=grade.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grade.add_arguments(grading)
    return parser.parse_args(argv)


def run_stubs(args: argparse.Namespace) -> int:
    try:
        changed = generate_stubs(args.root, check=args.check)
    except (MarkerError, FileNotFoundError) as error:
        print(f"dlvc stubs: {error}", file=sys.stderr)
        return 2
    if args.check:
        for path in changed:
            print(f"out of date: {path} (run `dlvc stubs`)")
        return 1 if changed else 0
    for path in changed:
        print(f"wrote {path}")
    print(f"{len(changed)} stub file(s) written" if changed else "stubs are up to date")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    commands = {"stubs": run_stubs, "grade": grade.run}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
