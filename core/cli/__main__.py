"""``python -m heritage.cli``: the ``heritage`` command."""

from heritage.cli import main

if __name__ == "__main__":
    main()
