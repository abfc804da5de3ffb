"""What `--overwrite` may replace: only a file of the kind the option writes."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from mtl_perception.outputs import OutputError, check_out_file, file_kind_problem

VIDEO = b"RIFF\x10\x00\x00\x00AVI LIST" + bytes(range(256))
HEADER = b'{"__metadata__":{"mtl_perception":"{}"}}'
SAFETENSORS = struct.pack("<Q", len(HEADER)) + HEADER
STATE = b'{"__metadata__":{"mtl_perception_resume":"{}"}}'  # train's resume state
RESUME = struct.pack("<Q", len(STATE)) + STATE
KINDS = {
    "json": (b'{"a": [1, 2]}\n', b'{"a": '),
    "checkpoint": (SAFETENSORS, struct.pack("<Q", 10**12) + HEADER),  # length past the end
    "onnx": (b"\x08\x07\x12\x07pytorch", b"\x89PNG\r\n\x1a\n"),
    "png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"GIF89a"),
    "csv": (b"start_s,end_s,label\n0.5,1.0,wave\n", b"a,b\n\x00\x01"),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_is_told_from_a_video_and_a_near_miss(tmp_path: Path, kind: str) -> None:
    good, near = KINDS[kind]
    for content, expected in ((good, None), (near, "not"), (VIDEO, "not"), (b"", None)):
        path = tmp_path / "f"
        path.write_bytes(content)
        problem = file_kind_problem(path, kind)  # type: ignore[arg-type]
        assert (problem is None) == (expected is None), (content, problem)


def test_a_resume_state_is_no_checkpoint_and_json_may_need_its_writer(tmp_path: Path) -> None:
    """fit-gate --out RUN/resume.safetensors --overwrite replaced a run's state, and
    summarize --json SET/synth.json --overwrite a set's manifest: valid files of the
    format, written by someone else."""
    state = tmp_path / "resume.safetensors"
    state.write_bytes(RESUME)
    assert file_kind_problem(state, "checkpoint") == ("is a safetensors file but not a "
                                                      "model checkpoint (a resume state?)")
    manifest = tmp_path / "synth.json"
    manifest.write_text('{"tool": "synth"}')
    assert file_kind_problem(manifest, "json") is None
    assert file_kind_problem(manifest, "json", "me") == "is not a JSON file written by me"
    manifest.write_text('{"written_by": "me", "x": 1}')
    assert file_kind_problem(manifest, "json", "me") is None


def test_csv_sniffing_allows_a_character_cut_at_the_sniffed_end(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_bytes(b"a" * 65535 + "é,wave\n".encode())  # é's 2 bytes straddle 64 KiB
    assert file_kind_problem(path, "csv") is None
    path.write_bytes(b"a" * 100 + b"\xff\xfe")
    assert file_kind_problem(path, "csv") == "is not a text (CSV) file"


def test_overwrite_refuses_another_kind_and_leaves_it_alone(tmp_path: Path) -> None:
    video = tmp_path / "sk_color.avi"
    video.write_bytes(VIDEO)
    with pytest.raises(OutputError, match=r"--json .*sk_color.avi exists and is not a JSON "
                                          r"file: it is not a file this option writes"):
        check_out_file(video, True, option="--json", kind="json")
    assert video.read_bytes() == VIDEO
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        check_out_file(video, False, option="--json", kind="json")  # the earlier rule first
    earlier = tmp_path / "earlier.json"
    earlier.write_text("[1]")
    check_out_file(earlier, True, option="--json", kind="json")  # an earlier result: fine
