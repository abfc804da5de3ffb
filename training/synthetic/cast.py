"""Who performs and where: actors and places drawn from the set's seed, never per class."""

from __future__ import annotations

import functools

import numpy as np

from training.synthetic.scene import Actor, Place, indoor_place, outdoor_place, random_actor


def rng_of(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


@functools.lru_cache(maxsize=64)
def actor_of(seed: int, task: str, group: int) -> Actor:
    """The actor of UCF group `gGG` or NVGesture subject `S`, the same in every class.

    Were each class filmed with its own actors, a network would learn the actor.
    """
    return random_actor(rng_of(seed, 1 if task == "action" else 3, group))


@functools.lru_cache(maxsize=32)
def place_of(seed: int, task: str, index: int, size: tuple[int, int]) -> Place:
    """One of the few locations every class is filmed in.

    A handful of places shared by all classes (NTU's setups, NVGesture's one
    car) rather than a new place per clip: the background then says nothing
    about the class and a small network learns quickly to look past it.
    """
    if task == "action":
        return outdoor_place(rng_of(seed, 5, index), size)
    return indoor_place(rng_of(seed, 6, index), size)

