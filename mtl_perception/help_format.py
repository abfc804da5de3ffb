"""The command lines' `--help` formatter: every option's default, except `None`.

argparse's `ArgumentDefaultsHelpFormatter` appends `(default: None)` to required
options and to options whose help already says what leaving them out does
(`--image-topic`: "default: the bag's only image topic"), which reads as if None
were a value to give. Options with a real default keep it.
"""

from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """`ArgumentDefaultsHelpFormatter` without the `(default: None)` it adds."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)
