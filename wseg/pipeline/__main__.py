"""``python -m wseg.pipeline``."""

from wseg.pipeline import main

if __name__ == "__main__":
    main()
