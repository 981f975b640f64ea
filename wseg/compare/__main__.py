"""``python -m wseg.compare``."""

from wseg.compare.command import main

main()
