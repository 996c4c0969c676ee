"""The monitoring mixin (mixin/) rendered with a chosen _config, through scripts/gen-mixin's own code."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from functools import cache
from types import ModuleType
from typing import Any

import yaml

from tests.stack import REPO


@cache
def gen_mixin() -> ModuleType:
    """scripts/gen-mixin as a module (it has no .py suffix)."""
    path = REPO / "scripts" / "gen-mixin"
    loader = importlib.machinery.SourceFileLoader("gen_mixin", str(path))
    spec = importlib.util.spec_from_loader("gen_mixin", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def render(**config: object) -> dict[str, Any]:
    """{"alerts": groups document, "rules": groups document, "dashboard": dashboard} for ``config``."""
    module = gen_mixin()
    return {
        "alerts": yaml.safe_load(module.yaml_of("prometheusAlerts", "-", config)),
        "rules": yaml.safe_load(module.yaml_of("prometheusRules", "-", config)),
        "dashboard": yaml.safe_load(module.dashboard(config)),
    }


def alert_rules(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Alert name -> rule of a rendered alerts document."""
    return {rule["alert"]: rule for group in document["groups"] for rule in group["rules"]}
