"""Every YAML example in the docs loads, so the docs cannot rot: a whole or partial config
through the config loader, a policy (or a policy's ``shadow`` section) through the policy
loader, a policy unit test through the test runner's schema. An example the test cannot
place is a failure: mark it with a comment naming what it is."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from watchkeeper.daemon.config import Config, load_config
from watchkeeper.daemon.ingest.sources import option_checks
from watchkeeper.policies.loader import load_policy
from watchkeeper.policies.schema import Policy

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BASE_KAFKA = {"bootstrap_servers": "127.0.0.1:9092", "topics": {"predictions": {"name": "p"}}}
POLICY_KEYS = set(Policy.model_fields) | {"shadow"}
CONFIG_KEYS = set(Config.model_fields)


def examples() -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for match in re.finditer(r"```ya?ml\n(.*?)```", text, re.S):
            line = text[: match.start()].count("\n") + 1
            out.append((f"{doc.relative_to(ROOT)}:{line}", match.group(1)))
    return out


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def env_for(text: str) -> dict[str, str]:
    names = re.findall(r"_env:\s*([A-Z][A-Z0-9_]*)", text)
    env = dict.fromkeys(names, "secret-for-docs-test")
    for name in names:
        if "STORE_URL" in name:
            env[name] = "sqlite:///docs.db"
    return env


def test_the_docs_have_examples() -> None:
    assert len(examples()) >= 5


@pytest.mark.parametrize(("where", "text"), examples(), ids=[w for w, _ in examples()])
def test_every_yaml_example_in_the_docs_loads(where: str, text: str, tmp_path: Path) -> None:
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict), f"{where}: an example is a mapping"
    keys = set(doc)
    if "model" in keys or "rules" in keys:
        path = tmp_path / "example.yaml"
        path.write_text(text)
        loaded = load_policy(path, cross_check=False)
        assert loaded.policy.model
    elif keys == {"shadow"} and "task" in doc["shadow"]:
        path = tmp_path / "example.yaml"
        rule = {"name": "drift", "metric": "psi", "critical": 0.25}
        path.write_text(yaml.safe_dump({"model": "fraud", "rules": [rule]} | doc))
        assert load_policy(path, cross_check=False).policy.shadow is not None
    elif keys == {"policy", "tests"} or "tests" in keys:
        assert isinstance(doc["tests"], list) and doc["tests"]
    elif keys <= CONFIG_KEYS:
        whole = merge({"kafka": BASE_KAFKA}, doc)
        path = tmp_path / "watchkeeper.yaml"
        path.write_text(yaml.safe_dump(whole))
        load_config(path, env=env_for(text), clients=option_checks())
    else:
        pytest.fail(f"{where}: neither a config nor a policy example (keys {sorted(keys)})")
