"""The terminal the commands print to: as wide as the terminal, or 200 columns into a pipe or file."""
import sys

from rich.console import Console

console = Console(width=None if sys.stdout.isatty() else 200)
