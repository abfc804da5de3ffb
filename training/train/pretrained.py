"""`pretrained: kinetics400 | none | PATH`: the backbone weights a run starts from.

torchvision publishes Kinetics-400 weights for r3d_18 only (`r3d_18-b3b3357e.pth`;
there are no official r3d_34 video weights). They are read from the torch hub
cache (`torch.hub.get_dir()/checkpoints`, moved by TORCH_HOME), the place
torchvision's own downloader puts them, and downloaded there only when the
file is absent and the network answers; otherwise one message names the
file and where to put it.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import torch

from mtl_perception.models.backbone import load_pretrained

LOG = logging.getLogger(__name__)

R3D18_FILE = "r3d_18-b3b3357e.pth"
R3D18_URL = f"https://download.pytorch.org/models/{R3D18_FILE}"


class PretrainedError(RuntimeError):
    """Pretrained weights that cannot be had; one line saying what to do."""


def kinetics_path() -> Path:
    """Where the Kinetics-400 r3d_18 weights are looked for (torchvision's cache path)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / R3D18_FILE


def backbone_weights(setting: str, arch: str, width: int) -> dict[str, torch.Tensor] | None:
    """The backbone state dict `setting` names, or None for `none`."""
    if setting == "none":
        return None
    if setting != "kinetics400":
        try:
            return load_pretrained(setting)
        except (FileNotFoundError, ValueError) as exc:
            raise PretrainedError(f"pretrained={setting}: {exc}") from exc
    if arch.startswith("x3d_"):
        raise PretrainedError(
            f"pretrained=kinetics400 is torchvision's r3d_18; for {arch} download "
            "PyTorchVideo's Kinetics-400 weights (https://dl.fbaipublicfiles.com/pytorchvideo/"
            "model_zoo/kinetics/X3D_XS.pyth, X3D_S.pyth or X3D_M.pyth: one network) and give "
            "pretrained=PATH with model.width=24"
        )
    if arch != "r3d_18":
        raise PretrainedError(
            f"pretrained=kinetics400: torchvision publishes Kinetics-400 weights for r3d_18 "
            f"only, not {arch}; use pretrained=none or pretrained=PATH to your own weights"
        )
    if width != 64:
        raise PretrainedError(
            f"pretrained=kinetics400 holds width-64 weights, model.width is {width}; "
            "use pretrained=none for a smaller width"
        )
    path = kinetics_path()
    if not path.is_file():
        _download(path)
    try:
        return load_pretrained(path)
    except ValueError as exc:
        raise PretrainedError(f"pretrained=kinetics400: {exc}") from exc


def _download(path: Path) -> None:
    """Fetch the weights into the hub cache; one PretrainedError when that fails."""
    LOG.info("downloading %s to %s", R3D18_URL, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # an offline machine must not hang here
    try:
        torch.hub.download_url_to_file(R3D18_URL, str(path), hash_prefix="b3b3357e")
    except Exception as exc:  # URLError, timeouts, hash mismatch: all mean "not here"
        raise PretrainedError(
            f"pretrained=kinetics400 needs {R3D18_FILE}, which is not in {path.parent} and "
            f"could not be downloaded ({type(exc).__name__}); fetch {R3D18_URL} on a machine "
            f"with network and put it at {path} (set TORCH_HOME to move the cache), or use "
            "pretrained=none"
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)
