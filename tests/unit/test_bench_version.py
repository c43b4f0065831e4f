"""The benchmark report's commit: a report left in bench/results does not make the code dirty."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.pipeline import source_commit


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _checkout(root: Path) -> str:
    (root / "bench" / "results").mkdir(parents=True)
    (root / "bench" / "pipeline.py").write_text("code\n")
    (root / "bench" / "results" / "pipeline-small.md").write_text("old report\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    return _git(root, "rev-parse", "--short", "HEAD")


def test_a_new_report_leaves_the_commit_clean(tmp_path: Path) -> None:
    head = _checkout(tmp_path)
    (tmp_path / "bench" / "results" / "pipeline-small.md").write_text("new report\n")
    assert source_commit(tmp_path) == head


def test_changed_code_is_dirty(tmp_path: Path) -> None:
    head = _checkout(tmp_path)
    (tmp_path / "bench" / "pipeline.py").write_text("changed\n")
    assert source_commit(tmp_path) == f"{head}-dirty"


def test_outside_a_checkout_it_is_unknown(tmp_path: Path) -> None:
    assert source_commit(tmp_path / "missing") == "unknown"
