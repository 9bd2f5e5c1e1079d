import sys

from fastserve.cli import command

sys.exit(command())
