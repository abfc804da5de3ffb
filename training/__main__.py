"""`python -m training SUBCOMMAND ...`: the training-side command line.

Each subcommand lives in its own module exposing `add_arguments(parser)` and
`run(args) -> int`; they are imported only when chosen, so `--help` is fast
and one broken optional dependency does not take the others down.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mtl_perception.exits import (
    guarded_entry,
    run_command,
    sigterm_as_interrupt,
    stopped_during_start_up,
)
from mtl_perception.help_format import DefaultsHelpFormatter

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "summarize": ("training.tools.summarize", "count samples, classes and missing files of a set"),
    "synth": ("training.synthetic.cli", "render the synthetic action/gesture dataset"),
    "train": ("training.train.cli", "train one model (any method and loss weighting)"),
    "evaluate": ("training.evaluation.cli", "score a checkpoint on a split of a set"),
    "experiments": ("training.experiments.grid", "run the paper's experiment grid for one set"),
    "to-bag": ("training.tools.to_bag",
               "a labelled video list -> rosbag2 (mcap/sqlite3) + labels CSV"),
    "export": ("training.tools.export",
               "a checkpoint -> ONNX (checked against PyTorch; --int8 for CPUs)"),
    "fit-gate": ("training.tools.fit_gate",
                 "add a task gate (action/gesture/none) to a checkpoint on frozen features"),
    "label-bag": ("training.tools.label_bag",
                  "a recorded bag -> contact sheet PNG + template labels CSV to edit"),
    "cache": ("training.tools.cache", "list the bag frame cache; --prune removes stale folders"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] not in SUBCOMMANDS:
        parser.print_help() if not argv or argv[0] in ("-h", "--help") else parser.parse_args(argv)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    name = argv[0]
    with sigterm_as_interrupt():  # the import takes seconds (torch): a signal is one line
        try:
            module = importlib.import_module(SUBCOMMANDS[name][0])
        except KeyboardInterrupt as exc:
            return stopped_during_start_up(exc, f"python -m training {name}")
    command_parser = argparse.ArgumentParser(
        prog=f"python -m training {name}",
        description=SUBCOMMANDS[name][1],
        formatter_class=DefaultsHelpFormatter,
    )
    module.add_arguments(command_parser)
    args = command_parser.parse_args(argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # OS errors, Ctrl-C and SIGTERM end every subcommand the same way (mtl_perception/exits.py);
    # a module's ERRORS are one line and exit 2 wherever in its run they are raised.
    out = getattr(args, "out", None) or getattr(args, "resume", None)
    stopped = (f"nothing written to {out}" if getattr(module, "STAGES_OUT", False)
               else "stopped")
    return run_command(lambda: int(module.run(args)), logging.getLogger(SUBCOMMANDS[name][0]),
                       errors=tuple(getattr(module, "ERRORS", ())), stopped=stopped, where=out)


# Console script `dataset_to_bag` (setup.py): its import is covered the same way.
dataset_to_bag = guarded_entry("training.tools.to_bag:main", "dataset_to_bag")


if __name__ == "__main__":
    sys.exit(main())
