"""``python -m research.compare DATA_DIR... -o OUT``: the paper's Table 1 on our data."""

from research.compare.command import main

if __name__ == "__main__":
    main()
