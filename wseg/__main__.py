"""``python -m wseg``: the LightningCLI entry point (see `wseg.cli`)."""

from wseg.cli import main

if __name__ == "__main__":
    main()
