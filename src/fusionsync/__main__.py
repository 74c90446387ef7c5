"""``python -m fusionsync``: the command-line interface."""

from fusionsync.cli import main

main()
