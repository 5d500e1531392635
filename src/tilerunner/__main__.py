"""``python -m tilerunner``."""

from tilerunner.cli.main import main

main()
