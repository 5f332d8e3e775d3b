"""``python -m trimodal.evaluation`` (same as ``python -m trimodal.evaluate``)."""

import sys

from trimodal.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
