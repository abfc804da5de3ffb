"""Scoring a checkpoint on a labelled split: the one evaluation every accuracy comes from
(`scoring`) and `python -m training evaluate` around it (`cli`)."""
