#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder's image: Python, bubblewrap for
# the grader's sandbox, the pinned CPU builds of the libraries in /autograder/venv, the
# unprivileged user that the grader's workers run as, and the time limits' calibration
# (the reference build graded once, kept in /autograder/calibration.json; every submission's
# run reuses it while the suite, the reference, Python, torch and the machine stay the same).
#
# Container size: grading one submission peaks at about 1,000 MB of memory (Assignment 1;
# 940 MB for Assignment 3, 770 MB for 2; measured with benchmarks/bench_autograder_memory.py),
# more than Gradescope's default of 768 MB. In the assignment's Autograder Settings choose a
# container with at least 1.5 GB of memory; below 1.2 GB every submission gets a results.json
# that says so, with zero points. Gradescope's default 0.5 vCPU and 10-minute timeout suffice.
set -euo pipefail
SOURCE="$(cd "$(dirname "$0")" && pwd)"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y python3 python3-venv bubblewrap
id -u dlvc-worker >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin dlvc-worker
python3 -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --upgrade pip
/autograder/venv/bin/python -m pip install --index-url https://download.pytorch.org/whl/cpu -r "$SOURCE/requirements-torch.txt"
/autograder/venv/bin/python -m pip install -r "$SOURCE/requirements.txt"
"$SOURCE/run_autograder" --calibrate
# The reference, the hidden suite and the calibration are root's alone: the workers' user cannot read them,
# even where the kernel's Landlock, which keeps its workers away from them too, is missing.
chmod -R go-rwx "$SOURCE" /autograder/calibration.json
