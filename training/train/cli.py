"""`python -m training train --config FILE [key=value ...] [--out RUN_DIR] [--resume RUN_DIR]`.

Trains one model (any method, any loss weighting) as a config file says;
`key=value` overrides any setting (`method=lws weighting.method=dwa
model.width=16`). `--resume RUN_DIR` continues an interrupted run exactly
(its stored settings; only iterations/workers/log_every/save_every/val_every
may be overridden). Under `torchrun --nproc_per_node N` the same command
trains on N processes (DistributedDataParallel-style; see docs/training.md).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import yaml

from mtl_perception.bag.outputs import OutputError, check_creatable
from mtl_perception.checkpoint import CheckpointError
from mtl_perception.exits import one_line
from mtl_perception.settings import SettingsError, apply_overrides
from training.datasets.listfile import DatasetError
from training.train.config import load_train_config
from training.train.pretrained import PretrainedError
from training.train.resume import RunDirError

LOG = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from training.train.config import TrainConfig, config_to_dict

    defaults = ", ".join(f"{k}={v}" for k, v in _flatten(config_to_dict(TrainConfig())).items())
    parser.epilog = f"settings (key=value) and their defaults: {defaults}"
    parser.add_argument("--config", type=Path, help="training config YAML (config/train/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="override settings, e.g. method=sps weighting.method=dwa")
    parser.add_argument("--out", type=Path, default=None,
                        help="run folder for a new run (default: runs/<config file name>)")
    parser.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                        help="continue the run in RUN_DIR where it stopped")
    parser.add_argument("--overwrite", action="store_true",
                        help="let a new run replace an earlier run in --out")
    parser.add_argument("--progress", choices=("auto", "bar", "lines"), default="auto",
                        help="live progress bar, plain lines, or bar only on a terminal")


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run(args: argparse.Namespace) -> int:
    from training.train.trainer import (  # torch import only when training
        TrainingStopped,
        stored_config,
        train,
    )

    progress = {"auto": None, "bar": True, "lines": False}[args.progress]
    try:
        if args.resume is not None:
            if args.config is not None or args.out is not None:
                raise SettingsError("--resume takes the run's own settings: drop --config/--out")
            overrides = apply_overrides({}, args.overrides)
            config = stored_config(args.resume, overrides)
            result = train(config, args.resume, resume=True, progress=progress)
        else:
            if args.config is None:
                raise SettingsError("give --config FILE (or --resume RUN_DIR)")
            config = load_train_config(args.config, args.overrides)
            out = args.out or Path("runs") / args.config.stem
            if not out.exists():
                check_creatable(out)  # before the data is read and the model built
            result = train(config, out, overwrite=args.overwrite, progress=progress)
    except (SettingsError, DatasetError, RunDirError, PretrainedError, CheckpointError,
            OutputError, yaml.YAMLError) as exc:
        LOG.error("%s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return 2
    except (FloatingPointError, TrainingStopped) as exc:  # its last good state is on disk
        LOG.error("%s", one_line(exc))
        return 1
    return 130 if result.interrupted else 0
