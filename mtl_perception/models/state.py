"""How a state dict differs from the one a model expects, in words.

One check for every place that loads weights (pretrained backbones,
checkpoints), so that a width, depth or precision mismatch is refused the
same way everywhere instead of being cast or half-loaded by `load_state_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def state_mismatch(
    expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], shown: int = 3
) -> list[str]:
    """The problems of `given` against `expected` (empty when it fits), first few named.

    A differing dtype counts: `load_state_dict` would cast silently, so float16
    weights would lose precision and integer ones would come out as garbage.
    """
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    common = sorted(set(expected) & set(given))
    wrong_shape = [k for k in common if expected[k].shape != given[k].shape]
    wrong_dtype = [k for k in common if expected[k].dtype != given[k].dtype]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (first: {missing[:shown]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (first: {unexpected[:shown]})")
    if wrong_shape:
        key = wrong_shape[0]
        problems.append(
            f"{len(wrong_shape)} with wrong shape (first: {key} is {tuple(given[key].shape)}, "
            f"the model has {tuple(expected[key].shape)})"
        )
    if wrong_dtype:
        key = wrong_dtype[0]
        problems.append(
            f"{len(wrong_dtype)} with wrong dtype (first: {key} is {given[key].dtype}, "
            f"the model needs {expected[key].dtype})"
        )
    return problems
