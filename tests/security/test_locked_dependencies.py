"""Locked dependencies (issue 9, "transitive dependencies are neither pinned nor hashed"): every
package the product installs comes from requirements.lock, pinned and hashed, and the lock is in
step with the direct pins of requirements.txt. (That the lock installs into a fresh virtualenv with
`pip install --require-hashes` needs the network; it is checked when the lock is regenerated.)"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>\S+)")


def lock_entries() -> dict[str, tuple[str, list[str]]]:
    """Canonical name → (version, sha256 hashes) from requirements.lock."""
    text = (ROOT / "requirements.lock").read_text()
    entries: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = ENTRY.match(block)
        if match:
            entries[canonicalize_name(match["name"])] = (match["version"], re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return entries


def direct_requirements() -> list[Requirement]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [Requirement(line.split("#", 1)[0].strip()) for line in lines if line.split("#", 1)[0].strip()]


def test_every_locked_package_is_pinned_and_hashed() -> None:
    entries = lock_entries()
    assert len(entries) > len(direct_requirements())  # the transitive ones are there too
    unhashed = [name for name, (_version, hashes) in entries.items() if not hashes]
    assert unhashed == []
    text = (ROOT / "requirements.lock").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert all(ENTRY.match(line) for line in lines), [line for line in lines if not ENTRY.match(line)]


def test_the_lock_has_each_direct_pin_at_its_version() -> None:
    entries = lock_entries()
    for requirement in direct_requirements():
        [spec] = list(requirement.specifier)
        assert spec.operator == "==", f"{requirement} is not pinned"
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{name} missing from requirements.lock: run `make lock`"
        assert entries[name][0] == spec.version, f"{name}: lock {entries[name][0]}, requirements.txt {spec.version}"


def test_the_lock_covers_every_transitive_dependency() -> None:
    """Walk the installed packages' own requirements from the direct pins: each one is locked."""
    entries = lock_entries()
    todo = [(requirement, frozenset(requirement.extras)) for requirement in direct_requirements()]
    seen: set[str] = set()
    missing: list[str] = []
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        if name not in entries:
            missing.append(name)
            continue
        for text in metadata.requires(requirement.name) or []:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": extra}) for extra in extras or {""}):
                todo.append((child, frozenset(child.extras)))
    assert missing == []
    assert {"starlette", "uvicorn", "urllib3", "pydantic-core"} <= seen  # the ones the review named


def test_make_and_ci_install_only_from_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    venv_target = makefile[makefile.index("$(VENV)/.installed:"):].split("\n\n", 1)[0]
    assert "pip install" in venv_target and "--require-hashes -r requirements.lock" in venv_target
    assert "-r requirements.txt" not in venv_target
    for target in ("run:", "test:"):
        assert f"{target} $(VENV)/.installed" in makefile
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make .venv/.installed" in ci and "make test" in ci
