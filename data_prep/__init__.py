"""Dataset preparation entry points: ``python -m data_prep COMMAND ...``."""
