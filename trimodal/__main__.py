"""``python -m trimodal COMMAND``: the ``trimodal`` command (:mod:`trimodal.commands`)."""

import sys

from trimodal.commands import main

if __name__ == "__main__":
    sys.exit(main())
