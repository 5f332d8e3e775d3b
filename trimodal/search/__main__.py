"""``python -m trimodal.search embed|index|search|serve`` (see :mod:`trimodal.search.cli`)."""

import sys

from trimodal.search.cli import main

if __name__ == "__main__":
    sys.exit(main())
