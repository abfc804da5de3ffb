"""The data of one run: the set's tasks, training clips, validation splits."""

from __future__ import annotations

from dataclasses import dataclass

from mtl_perception.preprocess import PreprocessConfig
from mtl_perception.settings import SettingsError
from training.datasets.clip_dataset import ClipDataset, ClipSamplingConfig
from training.datasets.sample import LabelledSplit
from training.datasets.sets import build_task_split, load_set
from training.train.config import TrainConfig


@dataclass
class RunData:
    task_names: tuple[str, ...]
    class_names: tuple[tuple[str, ...], ...]
    train: ClipDataset
    val_splits: dict[str, LabelledSplit]
    preprocess: PreprocessConfig
    missing: int  # files missing at the start (only with allow_missing)


def preprocess_of(config: TrainConfig) -> PreprocessConfig:
    clip = config.clip
    return PreprocessConfig(clip_length=clip.clip_length, resize=clip.resize, crop=clip.crop,
                            antialias=clip.antialias)


def build_data(config: TrainConfig) -> RunData:
    """Read the set's lists (before any model is built: bad input fails fast)."""
    set_config = load_set(config.set)
    names = config.tasks or tuple(set_config.tasks)
    unknown = [t for t in names if t not in set_config.tasks]
    if unknown:
        raise SettingsError(f"tasks: {unknown} not in set {config.set} "
                            f"(it has {sorted(set_config.tasks)})")
    train_splits = [build_task_split(set_config, t, "train") for t in names]
    val_splits = {t: build_task_split(set_config, t, config.val_split) for t in names}
    for name, split in zip(names, train_splits):
        if not split.samples:
            raise SettingsError(f"task {name!r} has no training samples in {config.set}")
        if list(val_splits[name].class_names) != list(split.class_names):
            raise SettingsError(f"task {name!r}: {config.val_split} split's classes differ "
                                "from the training split's")
    flip = tuple(i for i, t in enumerate(names) if t in config.clip.flip_tasks)
    sampling = ClipSamplingConfig(frame_step=config.clip.frame_step,
                                  flip_probability=config.clip.flip_probability,
                                  flip_tasks=flip, seed=config.seed,
                                  temporal=config.clip.temporal_sampling)
    preprocess = preprocess_of(config)
    train = ClipDataset.from_splits(train_splits, "train", preprocess, sampling)
    missing = train.check_files(allow_missing=config.allow_missing)
    return RunData(
        task_names=tuple(names),
        class_names=tuple(tuple(s.class_names) for s in train_splits),
        train=train,
        val_splits=val_splits,
        preprocess=preprocess,
        missing=missing,
    )
