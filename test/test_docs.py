"""The documentation: README.md and the mkdocs site in docs/.

README.md stays short and starts with the two commands. Every command block
(```bash, ```sh, ```shell, ```console) in README.md and docs/*.md carries a
marker on the line before its opening fence (blank lines between are allowed):

    <!-- run by: test/test_x.py::test_name -->     a test runs this block
    <!-- not run here: REASON -->                  why no test can (ROS 2, a GPU, data, minutes)

A `run by` marker must name a test that exists. Blocks marked
`run by: test/test_docs.py::test_cheap_blocks_run` are run here, as written
(`python` is this interpreter, PYTHONPATH the repository). The site itself is
built with `mkdocs build --strict` by `make test` (broken links and anchors,
pages left out of the nav), not here: this file builds nothing.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250
COMMAND_LANGUAGES = {"bash", "sh", "shell", "console"}
SELF_RUN = "test/test_docs.py::test_cheap_blocks_run"

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
RUN_BY = re.compile(r"^\s*<!-- run by: (?P<file>\S+\.py)::(?P<test>[\w:]+) -->\s*$")
NOT_RUN = re.compile(r"^\s*<!-- not run here: (?P<reason>\S.*\S) -->\s*$")
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it opens, its language, body and marker line."""

    where: str
    lang: str
    body: str
    marker: str


def fenced_blocks(text: str, where: str) -> list[Block]:
    """Every fenced block of a Markdown text, with the nearest non-blank line before it."""
    lines = text.split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence = opening["fence"]
        before = next((line for line in reversed(lines[:i]) if line.strip()), "")
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        body = "\n".join(line[len(opening["indent"]):] for line in lines[i + 1:end])
        blocks.append(Block(f"{where}:{i + 1}", opening["lang"].lower(), body, before))
        i = end + 1
    return blocks


def command_blocks(text: str, where: str) -> list[Block]:
    return [b for b in fenced_blocks(text, where) if b.lang in COMMAND_LANGUAGES]


def documents() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def all_command_blocks() -> list[Block]:
    return [block for path in documents()
            for block in command_blocks(path.read_text(encoding="utf-8"),
                                        str(path.relative_to(ROOT)))]


def marker_problem(block: Block) -> str | None:
    """None when the block is marked correctly, else what is wrong with it."""
    run_by = RUN_BY.match(block.marker)
    if run_by:
        test_file = ROOT / run_by["file"]
        if not test_file.is_file():
            return f"{block.where}: 'run by' names {run_by['file']}, which does not exist"
        source = test_file.read_text(encoding="utf-8")
        *classes, name = run_by["test"].split("::")
        missing = [n for n, kind in [*((c, "class") for c in classes), (name, "def")]
                   if not re.search(rf"^\s*{kind} {re.escape(n)}\b", source, re.M)]
        if missing:
            return (f"{block.where}: 'run by' names {run_by['file']}::{run_by['test']}, "
                    f"which has no {missing[0]}")
        return None
    if NOT_RUN.match(block.marker):
        return None
    return (f"{block.where}: a ```{block.lang} block without a marker on the line before it "
            "(<!-- run by: test/FILE.py::TEST --> or <!-- not run here: REASON -->)")


# --- the marker check checks something --------------------------------------


def test_marker_check_flags_unmarked_and_wrongly_marked_blocks() -> None:
    text = "\n".join([
        "Text.", "```bash", "make demo", "```",                              # line 2: no marker
        "<!-- not run here: needs a sourced ROS 2 -->", "", "```sh", "ros2 topic list", "```",
        "<!-- run by: test/test_docs.py::test_no_such_test -->", "```console", "x", "```",
        "<!-- run by: test/test_docs.py::test_cheap_blocks_run -->", "  ```bash", "  true", "  ```",
        "<!-- not run here: -->", "```shell", "y", "```",                   # empty reason
        "```yaml", "a: 1", "```",                                          # not a command block
        "<!-- run by: test/nothing_here.py::test_x -->", "```bash", "z", "```",
    ])
    blocks = command_blocks(text, "doc.md")
    assert [b.where for b in blocks] == ["doc.md:2", "doc.md:7", "doc.md:11", "doc.md:15",
                                         "doc.md:19", "doc.md:26"]
    assert blocks[3].body == "true"
    problems = [marker_problem(b) for b in blocks]
    assert problems[1] is None and problems[3] is None
    assert "without a marker" in str(problems[0]) and "without a marker" in str(problems[4])
    assert "which has no test_no_such_test" in str(problems[2])
    assert "test/nothing_here.py, which does not exist" in str(problems[5])


# --- README.md ---------------------------------------------------------------


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    lines = README.read_text(encoding="utf-8").split("\n")
    assert len(lines) <= README_MAX_LINES + 1, (
        f"README.md has {len(lines)} lines; at most {README_MAX_LINES}")
    first = fenced_blocks("\n".join(lines), "README.md")[0]
    assert int(first.where.split(":")[1]) <= 5, "README.md must open with the two commands"
    commands = [line.split("#")[0].strip() for line in first.body.split("\n")
                if line.strip() and not line[0].isspace()]  # not the comments' continuation lines
    assert commands == ["make demo", "make test"]
    # each says what it does, in its comment
    assert "accuracies" in first.body and "pytest" in first.body


def test_readme_links_into_docs_land_on_a_page_and_heading() -> None:
    from markdown.extensions.toc import slugify  # mkdocs' own heading ids

    text = README.read_text(encoding="utf-8")
    targets = [m["target"] for m in LINK.finditer(text) if m["target"].startswith("docs/")]
    assert len(targets) >= 16, targets  # the three ways in and every page of "Where to read on"
    for target in targets:
        page, _, anchor = target.partition("#")
        path = ROOT / page
        assert path.is_file(), f"README.md links to {page}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.M)
            slugs = {slugify(re.sub(r"[`*]", "", h), "-") for h in headings}
            assert anchor in slugs, f"README.md links to {target}: {page} has no heading '{anchor}'"


# --- docs/ and mkdocs.yml ------------------------------------------------------


def test_every_page_is_in_the_nav_once_and_nothing_else_is() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = [page for entry in config["nav"] for page in entry.values()]
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    assert sorted(nav) == pages
    assert len(set(nav)) == len(nav)
    assert nav[0] == "index.md"
    assert config["theme"]["name"] == "material"


def test_every_command_block_is_run_by_a_test_or_marked_not_run_here() -> None:
    blocks = all_command_blocks()
    assert len(blocks) > 20  # README.md's and the pages' ```bash blocks were found
    problems = [p for p in map(marker_problem, blocks) if p]
    assert not problems, "\n".join(problems)


def test_cheap_blocks_run(tmp_path: Path) -> None:
    blocks = [b for b in all_command_blocks() if RUN_BY.match(b.marker) and SELF_RUN in b.marker]
    assert blocks, f"no block is marked <!-- run by: {SELF_RUN} -->"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # A wrapper, not a link: a venv's interpreter finds its packages from the path it is called by.
    wrapper = bin_dir / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    for block in blocks:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.body], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (
            f"{block.where} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        # every --help printed its usage
        assert done.stdout.count("usage:") >= block.body.count("--help"), (
            block.where, done.stdout[:500])


@pytest.mark.parametrize("name", ["README.md", "docs/index.md"])
def test_three_ways_in_link_to_their_pages(name: str) -> None:
    text = (ROOT / name).read_text(encoding="utf-8")
    prefix = "docs/" if name == "README.md" else ""
    for page in ("robot.md", "training.md", "bag-evaluation.md"):
        assert f"]({prefix}{page})" in text, f"{name} does not link {prefix}{page}"
