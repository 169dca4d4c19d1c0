#!/bin/sh
# Installs a wheelhouse written by `streamforge dataflow build`: exactly the versions its
# requirements.txt pins, from its files alone (no package index), then checks that what is
# installed is consistent. The image build runs it (dataflow/Dockerfile), and so does the test
# that holds the image to the pins (tests/dataflow/test_worker.py), with PYTHON set to a venv's.
set -eu
wheelhouse=$1
python=${PYTHON:-python}
"$python" -m pip install --quiet --no-cache-dir --disable-pip-version-check --no-index \
    --find-links "$wheelhouse" --requirement "$wheelhouse/requirements.txt"
"$python" -m pip check --disable-pip-version-check
