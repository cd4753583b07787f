"""python -m local.simulator --port 8100 --accounts 5000 --seed 7

`stellarmap sim` imports `main` from here, so importing this module must not run anything."""
import sys

from local.simulator.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
