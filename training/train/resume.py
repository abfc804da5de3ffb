"""The run folder and the resumable training state, stored without pickle.

A run folder is ours when it holds `run.json` (written first, naming the
config); anything else that is not empty is refused, and an earlier run is
only replaced when the caller says so, deleting only the files a run writes.

`resume.safetensors` is one file (written atomically) holding every tensor a
resumed run needs: model weights, optimiser moments, loss-weighting state
(DWA windows, learned sigmas), LWS probabilities (a model buffer) and the
torch RNG states; its header metadata holds the JSON part (iteration, the
optimiser's param groups, GradScaler state, best metric, history,
counters). Weights and state are saved together, so they always agree.
A SHA-256 over the JSON part and every tensor (`content_digest`, the one
checkpoints use) is stored too and checked before anything is restored: a
flipped bit in a weight, an optimiser moment or the RNG state is refused,
never resumed. `run.json` (the run's settings) carries one too.

`--resume` refuses a state that is missing or not a regular file (a pipe, a
device, a folder, a broken link): resuming from nothing would train from
iteration 0 over the run's checkpoints. The one exception is a run provably
stopped before its first save: no state at that name and no checkpoint.
The state records the run's class names per task; a resumed run whose set
now names other classes (reordered, added, renamed) is refused.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mtl_perception.checkpoint import (
    CheckpointError,
    atomic_write,
    content_digest,
    read_checkpoint_info,
)
from mtl_perception.exits import one_line
from mtl_perception.fileio import require_regular_file
from mtl_perception.outputs import OutputError, refuse_inside_an_output

RUN_FILE = "run.json"
STATE_FILE = "resume.safetensors"
RUN_KIND = "mtl_perception training run"
STATE_KEY = "mtl_perception_resume"
DIGEST_KIND = "mtl_perception resume state"
RUN_DIGEST_KIND = "mtl_perception training run"
FORMAT = 1
CHECKPOINTS = ("best.safetensors", "last.safetensors")
# What a run writes (the only names `prepare_run_dir(overwrite=True)` deletes).
RUN_OUTPUTS = (*CHECKPOINTS, STATE_FILE, "train.csv", "val.csv",
               "summary.json", RUN_FILE)


class RunDirError(RuntimeError):
    """A run folder that cannot be used as asked; one line naming it."""


@dataclass
class TrainingState:
    """The JSON part of the resumable state."""

    iteration: int = 0  # iterations completed
    best: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    clips_seen: int = 0


def read_run(run_dir: Path) -> dict[str, Any]:
    """The run's `run.json`, or RunDirError if the folder is not one of our runs."""
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a training run folder (no {RUN_FILE})")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: unreadable run description: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("kind") != RUN_KIND or "config" not in doc:
        raise RunDirError(f"{path}: not written by mtl_perception's trainer")
    claimed = doc.pop("sha256", None)  # runs started before the checksum carry none
    if claimed is not None and claimed != content_digest(doc, {}, RUN_DIGEST_KIND):
        raise RunDirError(f"{path} is corrupt or was edited: the run's settings fail their "
                          "checksum; not resuming with them")
    return doc


def check_new_run_dir(run_dir: Path, overwrite: bool, inputs: Iterable[str | Path] = ()
                      ) -> bool:
    """May a new run go into `run_dir`? True when an earlier run of ours is to be replaced.

    Refuses a file, a folder inside another command's output (a synthetic set, a
    bag, an evaluation: `outputs.refuse_inside_an_output`; the run's files would leave that output
    no longer provably its command's), a non-empty folder that is not a run, an
    earlier run unless `overwrite` (the user's consent), and `inputs` (the run's
    init, replay, pretrained and set files) at a name the run writes or deletes
    there: fine-tuning from RUN/best.safetensors into RUN with --overwrite deleted
    the checkpoint it started from.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir} exists and is not a folder")
    try:  # the outputs' own check, raised as the run folder's error
        refuse_inside_an_output(run_dir, "--out")
    except OutputError as exc:
        raise RunDirError(str(exc)) from None
    written = {os.path.realpath(run_dir / name) for name in RUN_OUTPUTS}
    for source in inputs:
        if os.path.realpath(source) in written:
            raise RunDirError(f"{source} is an input of this run and a file it writes in "
                              f"{run_dir}: copy it elsewhere first, or choose another --out")
    if not (run_dir.is_dir() and any(run_dir.iterdir())):
        return False
    read_run(run_dir)  # raises for a folder that is not ours
    if not overwrite:
        raise RunDirError(
            f"{run_dir} already holds a training run: continue it with --resume {run_dir}, "
            "choose another --out, or pass --overwrite to replace it"
        )
    _check_replaceable(run_dir)
    return True


def _check_replaceable(run_dir: Path) -> None:
    """Every path `--overwrite` would delete is a plain file at a name a run writes.

    A run folder is written in place (runs last days and are resumed), so it
    carries no manifest; only files at the names a run writes are deleted,
    and a folder or link at such a name is the user's: refused, nothing deleted.
    """
    board = run_dir / "tensorboard"
    paths = [run_dir / name for name in RUN_OUTPUTS]
    if board.is_symlink() or (board.exists() and not board.is_dir()):
        raise RunDirError(f"{board}: a training run writes a folder here, this is something "
                          "else; refusing to replace the run (nothing was changed)")
    if board.is_dir():
        paths += sorted(board.glob("events.out.tfevents.*"))
    for path in paths:
        if (path.exists() or path.is_symlink()) and (path.is_symlink() or not path.is_file()):
            raise RunDirError(f"{path}: not a file the training run wrote (a folder or link); "
                              "refusing to replace the run (nothing was changed)")


def prepare_run_dir(run_dir: Path, config: dict[str, Any], overwrite: bool,
                    init: dict[str, Any] | None = None) -> None:
    """Create the folder for a new run; refuse a foreign or (without consent) earlier run.

    `init`: the provenance of an `init:` checkpoint, recorded at the start so that a
    resumed run reports the file it started from, not whatever now sits at that path.
    """
    if check_new_run_dir(run_dir, overwrite):
        for name in RUN_OUTPUTS:
            (run_dir / name).unlink(missing_ok=True)
        board = run_dir / "tensorboard"
        if board.is_dir():
            for event in board.glob("events.out.tfevents.*"):
                event.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "kind": RUN_KIND, "format": FORMAT, "config": config,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if init:
        doc["init"] = init
    doc["sha256"] = content_digest(json.loads(json.dumps(doc)), {}, RUN_DIGEST_KIND)
    atomic_write(run_dir / RUN_FILE,
                 lambda tmp: tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8"))


def resumable_state(run_dir: Path) -> Path | None:
    """The state `--resume` continues from; None for a run stopped before its first save.

    Without a state a resumed run trains from iteration 0 and overwrites the run's
    checkpoints, so that happens only where nothing was saved: no state at that name
    (not even a broken link) and no checkpoint. A state that is missing beside saved
    checkpoints was moved or deleted, and a pipe, device, folder or link loop cannot
    be read (a FIFO would block): both are refused before anything is read or written.
    """
    path = run_dir / STATE_FILE
    saved = [run_dir / name for name in CHECKPOINTS if os.path.lexists(run_dir / name)]
    if not os.path.lexists(path) and not saved:
        return None
    if os.path.lexists(path):
        why = "not resuming from it (nothing was changed)"
    else:
        why = (f"the run saved {saved[0].name}, so its state was moved or deleted; not "
               "training it again from iteration 0 over its checkpoints (nothing was changed; "
               f"to start it anew: --config FILE --out {run_dir} --overwrite)")
    return require_regular_file(path, "resumable state",
                                lambda problem: RunDirError(f"{problem}; {why}"))


def save_state(
    path: Path,
    model: torch.nn.Module,
    weighting: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    state: TrainingState,
    classes: Mapping[str, Sequence[str]],
    settings: Mapping[str, Any] | None = None,
) -> None:
    """Write the resumable state atomically (one safetensors file, no pickle).

    `classes`: each task's class names in label order, which `check_classes` compares
    with the set's when the run resumes (the head weights are only valid for them).
    `settings`: the run's settings that may not change on resume, which
    `check_settings` compares with the run's (a state copied from another run).
    """
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in (("model.", model), ("weighting.", weighting)):
        for key, value in module.state_dict().items():
            tensors[prefix + key] = value
    optim = optimizer.state_dict()
    for index, entries in optim["state"].items():
        for key, value in entries.items():
            if not isinstance(value, torch.Tensor):
                value = torch.tensor(value)
            tensors[f"optim.{index}.{key}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = rng
    np_state: Any = np.random.get_state()
    document = {
        "format": FORMAT,
        "state": state.__dict__,
        "classes": {task: list(names) for task, names in classes.items()},
        **({"settings": json.loads(json.dumps(dict(settings)))} if settings is not None else {}),
        "param_groups": optim["param_groups"],
        "scaler": scaler.state_dict(),
        "rng": {"python": _jsonable(random.getstate()),
                "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]},
    }
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    document["sha256"] = content_digest(json.loads(json.dumps(document)), tensors, DIGEST_KIND)
    metadata = {STATE_KEY: json.dumps(document)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_state(
    path: Path,
    model: torch.nn.Module,
    weighting: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> TrainingState:
    """Restore everything `save_state` wrote; RunDirError for a damaged file."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        document = json.loads(metadata[STATE_KEY])
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError, RecursionError) as exc:
        raise RunDirError(f"{path}: cannot read the resumable state: "
                          f"{one_line(exc)}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else None
        raise RunDirError(f"{path}: state format {found}, expected {FORMAT}")
    _check_digest(path, document, tensors)
    # A state without a checksum (written before it existed) is read as it comes: every
    # part is checked here, so a damaged one is one line before the first step, not a
    # traceback from torch, `random` or the first validation.
    try:
        state = _training_state(document.get("state"))
        _restore(path, document, tensors, model, weighting, optimizer, scaler)
    except RunDirError:
        raise  # already names what does not fit
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        what = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else one_line(exc)
        raise RunDirError(f"{path}: the resumable state is damaged ({what[:200]}); "
                          "not resuming from it (nothing was changed)") from exc
    return state


def _training_state(value: Any) -> TrainingState:
    """The state's JSON counters and history, each of the type the trainer uses."""
    if not isinstance(value, dict):
        raise TypeError("its `state` is not an object")
    known = set(TrainingState.__dataclass_fields__)
    if unknown := sorted(set(value) - known):
        raise ValueError(f"unknown field {unknown[0]!r} in its `state`")
    state = TrainingState(**value)
    for name in ("iteration", "clips_seen"):
        number = getattr(state, name)
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            raise ValueError(f"{name} {number!r}")
    if not (isinstance(state.skipped, list) and all(isinstance(p, str) for p in state.skipped)):
        raise TypeError("`skipped` is not a list of paths")
    if not isinstance(state.history, list):
        raise TypeError("`history` is not a list")
    for entry in [state.best] * bool(state.best) + state.history:
        if not (isinstance(entry, dict) and isinstance(entry.get("iteration"), int)
                and isinstance(entry.get("cumulative"), (int, float))
                and isinstance(entry.get("accuracy"), dict)):
            raise TypeError(f"a validation entry is damaged: {str(entry)[:80]}")
    return state


def _restore(path: Path, document: dict[str, Any], tensors: dict[str, torch.Tensor],
             model: torch.nn.Module, weighting: torch.nn.Module,
             optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    device = next(model.parameters()).device
    for prefix, module in (("model.", model), ("weighting.", weighting)):
        part = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        _load_part(path, prefix[:-1], module, part)
    optim_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            optim_state.setdefault(int(index), {})[name] = value
    groups = document["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": optim_state, "param_groups": groups})
    for param, entries in optimizer.state.items():  # moments live where the parameters do
        _check_moments(param, entries)
        for name, value in entries.items():
            if isinstance(value, torch.Tensor) and name != "step":
                entries[name] = value.to(device)
    if document["scaler"]:
        scaler.load_state_dict(document["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    rng = document["rng"]
    random.setstate(_tupled(rng["python"]))
    np_state = rng["numpy"]
    np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))


# What Adam keeps per parameter once it has stepped (torch checks none of it on load:
# a missing or misshapen moment failed at the first step, mid-run)
_ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")


def _check_moments(param: torch.Tensor, entries: Mapping[str, Any]) -> None:
    for name in _ADAM_STATE:
        if name not in entries:
            raise KeyError(f"optimiser state without {name!r}")
    for name, value in entries.items():
        if name != "step" and isinstance(value, torch.Tensor) and value.shape != param.shape:
            raise ValueError(f"optimiser {name} of shape {list(value.shape)} for a parameter "
                             f"of shape {list(param.shape)}")


def check_settings(path: Path, settings: Mapping[str, Any]) -> None:
    """Refuse a state saved by a run with other settings (one copied from another run).

    The weights and Adam moments would be another run's, and the stored learning
    rates would silently replace this run's. States saved before they recorded their
    settings are not checked.
    """
    stored = _header(path).get("settings")
    if stored is None:
        return
    if not isinstance(stored, dict):
        raise RunDirError(f"{path}: the resumable state is damaged (its settings)")
    now = json.loads(json.dumps(dict(settings)))
    differing = [k for k in sorted({*stored, *now}) if stored.get(k) != now.get(k)]
    if differing:
        key = differing[0]
        raise RunDirError(f"{path} was saved by a run with other settings ({key}: "
                          f"{str(stored.get(key))[:80]} there, {str(now.get(key))[:80]} in "
                          f"{path.parent / RUN_FILE}); not resuming from another run's state "
                          "(nothing was changed)")


def _load_part(path: Path, name: str, module: torch.nn.Module,
               part: dict[str, torch.Tensor]) -> None:
    """`module.load_state_dict(part)`, refused in one line naming what differs.

    torch's own message spans lines (one per kind of difference, every key), and
    only its first line, which names nothing, would reach the user.
    """
    try:
        module.load_state_dict(part, strict=True)
    except RuntimeError as exc:
        problem = _misfit(module.state_dict(), part) or one_line(exc)
        raise RunDirError(f"{path}: state does not fit this run's {name}: {problem}") from exc


def _misfit(own: Mapping[str, torch.Tensor], stored: Mapping[str, torch.Tensor]) -> str:
    """The first missing key, unexpected key and size mismatch of `stored` against `own`."""
    missing = [k for k in own if k not in stored]
    unexpected = [k for k in stored if k not in own]
    sizes = [k for k in own if k in stored and own[k].shape != stored[k].shape]
    found = []
    if missing:
        found.append(f"missing key {missing[0]!r}" + _more(missing))
    if unexpected:
        found.append(f"unexpected key {unexpected[0]!r}" + _more(unexpected))
    if sizes:
        key = sizes[0]
        found.append(f"size mismatch for {key!r}: {list(stored[key].shape)} in the state, "
                     f"{list(own[key].shape)} in this run's model" + _more(sizes))
    return "; ".join(found)


def _more(keys: list[str]) -> str:
    return f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""


def _header(path: Path) -> dict[str, Any]:
    """The JSON part of a saved state, from its header only (`load_state` verifies it)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            document = json.loads((handle.metadata() or {})[STATE_KEY])
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError, RecursionError) as exc:
        raise RunDirError(f"{path}: cannot read the resumable state: "
                          f"{one_line(exc)}") from exc
    if not isinstance(document, dict):
        raise RunDirError(f"{path}: the resumable state is damaged (its header is not an "
                          "object)")
    return document


def stored_iteration(path: Path) -> int:
    """The iterations a saved state has done (from its header only; `load_state` verifies)."""
    try:
        iteration = _header(path)["state"]["iteration"]
    except (KeyError, TypeError) as exc:
        raise RunDirError(f"{path}: cannot read the resumable state: "
                          f"{one_line(exc)}") from exc
    if not isinstance(iteration, int) or isinstance(iteration, bool) or iteration < 0:
        raise RunDirError(f"{path}: the resumable state is damaged (iteration {iteration!r})")
    return iteration


def check_classes(path: Path, classes: Mapping[str, Sequence[str]], set_path: object) -> None:
    """Refuse to resume a run whose set now names other classes than it trained on.

    Labels are indices into each task's class list: reordered, the heads would go on
    training toward swapped classes without a word; added or removed, they no longer fit.
    `classes`: the run's tasks and class names as its data gives them now.
    """
    recorded = recorded_classes(path)
    difference = None if recorded is None else class_difference(recorded, classes)
    if difference is not None:
        raise RunDirError(f"{path}: {difference} (set {set_path}); a resumed run keeps the "
                          "classes it was trained on: restore the set's class list, or "
                          "start a new run (nothing was changed)")


def recorded_classes(path: Path) -> dict[str, list[str]] | None:
    """Each task's class names as the run trained them, from the state's header.

    A state saved before it carried them: the run's last checkpoint's (None when that
    is unreadable too; the heads' shapes are still checked when the state loads).
    """
    classes = _header(path).get("classes")
    if classes is None:
        return _checkpoint_classes(path.parent / CHECKPOINTS[1])
    if not (isinstance(classes, dict) and all(
            isinstance(names, list) and all(isinstance(n, str) for n in names)
            for names in classes.values())):
        raise RunDirError(f"{path}: the resumable state is damaged (its class names)")
    return classes


def _checkpoint_classes(path: Path) -> dict[str, list[str]] | None:
    try:
        info = read_checkpoint_info(path)
    except CheckpointError:
        return None
    return {task: list(names)
            for task, names in zip(info.model.task_names, info.class_names, strict=True)}


def class_difference(run: Mapping[str, Sequence[str]], data: Mapping[str, Sequence[str]]
                     ) -> str | None:
    """The first difference between the run's classes and the data's, in words, or None."""
    if list(run) != list(data):
        return f"the run trained tasks {list(run)}, the set gives {list(data)}"
    for task, trained in run.items():
        names, now = list(trained), list(data[task])
        if names == now:
            continue
        i = next((i for i, (a, b) in enumerate(zip(names, now)) if a != b),
                 min(len(names), len(now)))
        if i < len(names) and i < len(now):
            return f"task {task}: class {i} is {names[i]!r} in the run, {now[i]!r} in the set"
        if i < len(now):
            return (f"task {task}: class {i} is {now[i]!r} in the set, but the run has "
                    f"{len(names)} classes")
        return (f"task {task}: class {i} is {names[i]!r} in the run, but the set has "
                f"{len(now)} classes")
    return None


def _check_digest(path: Path, document: dict[str, Any], tensors: dict[str, torch.Tensor]
                  ) -> None:
    """Refuse a state whose JSON part or tensors changed since `save_state` hashed them.

    States written before the digest existed carry none; they are still read.
    """
    expected = document.pop("sha256", None)
    if expected is None:
        return
    try:
        actual = content_digest(document, tensors, DIGEST_KIND)
    except (TypeError, ValueError):
        actual = None
    if actual != expected:
        raise RunDirError(f"{path} is corrupt or was edited: the resumable state (weights, "
                          "optimiser state, RNG state) fails its checksum; not resuming from it")


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, (list, tuple)) else value


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value
