"""docker/Dockerfile and docker/Dockerfile.gpu: hadolint, multi-stage, locked installs, non-root."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO, run, tool

DOCKERFILES = [REPO / "docker" / "Dockerfile", REPO / "docker" / "Dockerfile.gpu"]


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _stages(path: Path) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(path):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    result = run([tool("hadolint"), "--failure-threshold", "info", str(dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_really_checking(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\n")
    result = run([tool("hadolint"), str(bad)])
    assert result.returncode != 0 and "DL3007" in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_multi_stage_locked_and_non_root(dockerfile: Path) -> None:
    stages = _stages(dockerfile)
    final = stages[-1]
    assert len([s for s in stages if any(k == "RUN" for k, _ in s)]) >= 2, "build and runtime stages"
    installs = [args for stage in stages for k, args in stage if k == "RUN" and "pip install" in args]
    assert installs and all("constraints" in args or "--no-deps" in args for args in installs), installs
    final_runs = " ".join(args for k, args in final if k == "RUN")
    assert not re.search(r"pip install|apt-get install|gcc|build-essential", final_runs), "build tools in runtime"
    users = [args for k, args in final if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), users
    assert any(k == "COPY" and "--from=build" in args and "/opt/venv" in args for k, args in final)


def test_cpu_image_uses_cpu_torch_and_gpu_image_cuda() -> None:
    cpu = DOCKERFILES[0].read_text()
    gpu = DOCKERFILES[1].read_text()
    assert "download.pytorch.org/whl/cpu" in cpu and re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", cpu, re.M)
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:[\d.]+-(cudnn-)?runtime-", gpu, re.M)
    assert "whl/cpu" not in gpu and "torch.version.cuda" in gpu
    torch_lock = re.search(r"^torch==(\S+)$", (REPO / "constraints.txt").read_text(), re.M)
    assert torch_lock and torch_lock.group(1).endswith("+cpu"), "the GPU image swaps the +cpu pin for a CUDA one"


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for the patterns used here: last match wins, ! re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if (
            fnmatch.fnmatch(path, pattern)
            or path.startswith(pattern + "/")
            or (pattern.startswith("**/") and fnmatch.fnmatch(Path(path).name, pattern[3:]))
        ):
            ignored = not negate
    return ignored


def test_build_context_sends_what_the_images_copy_and_never_secrets() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for secret_or_bulk in (".env", ".venv/bin/python", ".git/config", "var/data/smmdn.db", "tests/conftest.py"):
        assert _ignored(secret_or_bulk, patterns), secret_or_bulk
    for dockerfile in DOCKERFILES:
        for keyword, args in _instructions(dockerfile):
            if keyword != "COPY" or "--from=" in args:
                continue
            sources = [a for a in args.split() if not a.startswith("--")][:-1]
            for source in sources:
                if "[" in source:  # optional file (prefect.yam[l], README.m[d])
                    continue
                assert (REPO / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"
                assert not _ignored(source, patterns), f"{dockerfile.name}: COPY {source} is excluded by .dockerignore"
