"""Train a trimodal model: ``accelerate launch train.py --objective weighted_contrastive``.

Options: ``--config FILE.yaml``, ``--data PREPARED_DIR``, ``--output RUN_DIR``,
``--resume latest``, ``--grad-cache-chunk N`` and any config key as ``--section.key VALUE``
(see ``trimodal/config.py``). Without ``--data`` (and no ``data.prepared_dir`` in the config)
it runs the embedded demo on the built-in synthetic corpus.
"""

import sys

from trimodal.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
