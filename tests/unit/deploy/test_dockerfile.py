"""The worker image: slim, non-root, healthcheck on /health, configured only by EVENTPRO_*."""

from __future__ import annotations

import json
import re
import tomllib

import pytest
from deploy_files import ROOT

from eventpro.settings import Settings

Instruction = tuple[str, str]


def _instructions() -> list[Instruction]:
    """(KEYWORD, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            found.append((keyword.upper(), args.strip()))
    return found


@pytest.fixture(scope="module")
def final_stage() -> list[Instruction]:
    """Instructions of the last stage (the image that runs)."""
    instructions = _instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _env(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    return env


def test_final_stage_is_slim_python(final_stage: list[Instruction]) -> None:
    image = final_stage[0][1]
    assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim", image)
    args = dict(
        re.findall(r"^ARG (\w+)=(\S+)$", (ROOT / "Dockerfile").read_text(encoding="utf-8"), re.M)
    )
    assert args["PYTHON_VERSION"] == "3.11"
    assert sum(1 for keyword, _ in _instructions() if keyword == "FROM") == 2


def test_runs_as_non_root(final_stage: list[Instruction]) -> None:
    users = [args for keyword, args in final_stage if keyword == "USER"]
    assert users, "the image must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    entry = [i for i, (keyword, _) in enumerate(final_stage) if keyword == "ENTRYPOINT"]
    assert max(i for i, (k, _) in enumerate(final_stage) if k == "USER") < entry[0]


def test_healthcheck_is_health_on_the_configured_port(final_stage: list[Instruction]) -> None:
    (check,) = [args for keyword, args in final_stage if keyword == "HEALTHCHECK"]
    assert "/health" in check and "EVENTPRO_WEB_PORT" in check
    command = json.loads(check.split("CMD", 1)[1])
    assert command[0] == "python"


def test_environment_uses_settings_names(final_stage: list[Instruction]) -> None:
    env = _env(final_stage)
    eventpro = {k: v for k, v in env.items() if k.startswith("EVENTPRO_")}
    known = {f"EVENTPRO_{name.upper()}" for name in Settings.model_fields}
    assert set(eventpro) <= known
    settings = Settings(**{k.removeprefix("EVENTPRO_").lower(): v for k, v in eventpro.items()})
    assert settings.web_host == "0.0.0.0"
    (exposed,) = [args for keyword, args in final_stage if keyword == "EXPOSE"]
    assert int(exposed) == settings.web_port
    volumes = [json.loads(args) for keyword, args in final_stage if keyword == "VOLUME"]
    assert [str(settings.data_dir)] in volumes


def test_no_secrets_in_the_image(final_stage: list[Instruction]) -> None:
    for keyword, args in _instructions():
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"PASSWORD|TOKEN|SECRET", args, re.I), args


def test_entrypoint_is_the_eventpro_worker(final_stage: list[Instruction]) -> None:
    instructions = dict(final_stage)
    assert json.loads(instructions["ENTRYPOINT"]) == ["eventpro"]
    assert json.loads(instructions["CMD"]) == ["worker"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"]["eventpro"] == "eventpro.cli:main"


def test_build_context_is_only_the_package() -> None:
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = {
        source
        for keyword, args in _instructions()
        if keyword == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    }
    assert copied <= allowed
    for source in copied:
        assert (ROOT / source).exists()
