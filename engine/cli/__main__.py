import sys

from engine.cli import main

# The guard matters: vLLM may start its workers by spawning, which re-imports __main__.
if __name__ == "__main__":
    sys.exit(main())
