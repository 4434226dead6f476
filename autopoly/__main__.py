"""``python -m autopoly``: the demo by default, ``fit DATA.csv`` for a CSV file (see ``--help``)."""

import sys

from ._cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
