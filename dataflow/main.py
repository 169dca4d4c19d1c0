"""The Flex Template launcher's entry point (FLEX_TEMPLATE_PYTHON_PY_FILE of the image):
the launcher itself is a library function, beam_pipelines/dataflow/launcher.py."""

import sys

from beam_pipelines.dataflow.launcher import main

if __name__ == "__main__":
    sys.exit(main())
