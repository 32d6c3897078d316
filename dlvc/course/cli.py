"""The ``dlvc`` command.

For students (in the handout):

    dlvc submit --group G [--report report.pdf]
                          pack group_G.zip for the assignment, check it, run the public tests

For instructors and teaching assistants (in the course repository only):

    dlvc stubs [--check]  regenerate the student stubs in dlvc/ from solutions/ (or only compare)
    dlvc grade SUBMISSION... --assignment N --out DIR
                          grade a class with the hidden suite
    dlvc handout --assignment N --out DIR
                          build the zip that students receive, and check it
    dlvc autograder --assignment N --out DIR
                          build the zip to upload as a Gradescope autograder
    dlvc leaderboard SUBMISSION... --out DIR [--split test]
                          rank the class competition's entries (Assignment 3) on a held-out split

Each command is a module of this package with ``add_arguments(parser)`` and
``run(args)``; only the chosen command's module is imported (some import torch,
which ``dlvc grade``'s own process never needs). The handout leaves the staff
modules out, so a student's ``dlvc`` offers ``submit`` only.
"""

import argparse
import importlib
import importlib.util
import sys

COMMANDS = {
    "submit": "pack the submission zip, check it, run the public tests",
    "stubs": "generate the student stubs in dlvc/ from solutions/",
    "grade": "grade submissions with an assignment's hidden suite",
    "handout": "build the handout zip that students receive",
    "autograder": "build the Gradescope autograder zip of an assignment",
    "leaderboard": "rank the class competition's saved models on a held-out split",
}
MODULES = {
    "submit": "student.submit",
    "stubs": "authoring.stubs",
    "grade": "grader.grade",
    "handout": "authoring.handout",
    "autograder": "authoring.autograder",
    "leaderboard": "grader.leaderboard",
}
"""Each command's module, under this package: the students' tools, the trusted grader, the authoring tools."""


def available_commands() -> list[str]:
    """The commands whose module is present: all of them in the course repository, ``submit`` in a handout."""
    return [name for name in COMMANDS if _present(f"{__package__}.{MODULES[name]}")]


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its subpackage (grader/, authoring/) is not there either
        return False


def parse_args(argv=None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((word for word in argv if not word.startswith("-")), None)  # the command: dlvc itself takes no option but --help
    available = available_commands()
    parser = argparse.ArgumentParser(prog="dlvc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(available) + "}")
    for name in available:
        if name != chosen:
            commands.add_parser(name, help=COMMANDS[name])  # listed in dlvc --help; its module stays unimported
            continue
        module = importlib.import_module(f"{__package__}.{MODULES[name]}")
        command = commands.add_parser(name, help=COMMANDS[name], description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
