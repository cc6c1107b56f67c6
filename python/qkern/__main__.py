"""`python -m qkern`: the same command line as the `qkern` console script."""

import sys

from .cli import main

sys.exit(main())
