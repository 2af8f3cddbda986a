"""``python -m mfgpde``: the command line (:func:`mfgpde.cli.main`)."""

import sys

from .cli import main

sys.exit(main())
