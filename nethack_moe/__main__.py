"""``python -m nethack_moe``: the command line, so that ``torchrun -m nethack_moe train ...`` works."""

import sys

from nethack_moe.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
