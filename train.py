"""``accelerate launch train.py ...``: ``trimodal train`` under a launcher (same options;
``trimodal train --help`` lists them). With no arguments it runs the embedded demo."""

import sys

from trimodal.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
