"""`python -m orchestrator` is the same as the `orchestrate` command."""

import sys

from orchestrator.cli import main

if __name__ == "__main__":  # worker processes started with `spawn` import this module too
    sys.exit(main())
