"""Scoring a checkpoint on a labelled split: the one evaluation every accuracy comes from
(`scoring`, with the task gate's figures in `gate_scores`), `python -m training evaluate`
around it (`cli`), and exported engines in the evaluator's shape (`engine_model`)."""
