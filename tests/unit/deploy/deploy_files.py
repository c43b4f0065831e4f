"""Helpers for the deployment-file tests: repository paths, YAML loading, interpolation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
DUMMY_SECRET = "dummy-secret-for-tests-0123456789"
_VAR = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: Any) -> str:
    """``value`` as compose would see it with no variables set (required ones get a dummy).

    :raises AssertionError: a ``${VAR}`` without default, which compose would turn into "".
    """
    text = str(value)

    def resolve(match: re.Match[str]) -> str:
        op = match.group("op")
        if op is None:
            raise AssertionError(f"{match.group(0)} has no default and is not required (:?)")
        return match.group("arg") if op.endswith("-") else DUMMY_SECRET

    return _VAR.sub(resolve, text.replace("$$", "\0")).replace("\0", "$")


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML file with anchors and merge keys (``<<``) resolved, as compose reads it."""
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


COMPOSE = ROOT / "docker-compose.yml"
SASL_OVERLAY = ROOT / "deploy" / "kafka" / "compose.sasl.yml"
