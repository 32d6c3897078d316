#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder's image: Python, bubblewrap for
# the grader's sandbox, and the pinned CPU builds of the libraries in /autograder/venv.
set -euo pipefail
SOURCE="$(cd "$(dirname "$0")" && pwd)"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y python3 python3-venv bubblewrap
python3 -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --upgrade pip
/autograder/venv/bin/python -m pip install --index-url https://download.pytorch.org/whl/cpu -r "$SOURCE/requirements-torch.txt"
/autograder/venv/bin/python -m pip install -r "$SOURCE/requirements.txt"
