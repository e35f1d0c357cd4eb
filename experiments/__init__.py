"""The five tutorials, step by step: `python -m experiments NAME` (see __main__.py)."""
