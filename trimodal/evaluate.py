"""``python -m trimodal.evaluate``: evaluate a saved model, or ``merge`` several results.

A thin entry point; the code lives in :mod:`trimodal.evaluation` (see
:func:`trimodal.evaluation.evaluate` for the Python API and ``--help`` for the options).
"""

import sys

from trimodal.evaluation import evaluate, main, merge_results

__all__ = ["evaluate", "main", "merge_results"]

if __name__ == "__main__":
    sys.exit(main())
