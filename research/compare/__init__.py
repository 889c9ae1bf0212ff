"""The paper's comparison (Table 1 on our data): ``python -m research.compare --help``."""
