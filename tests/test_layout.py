"""The folders show the architecture, and this test keeps them honest.

Subpackages import downward only: the DNS edge and health never reach up into
steering, the API, Route53 or the cluster code; pure modules import no sockets,
event loop, AWS SDK, wire library or clock. The checker runs on the real package
and on a planted bad tree, so it is known to catch what it is meant to catch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import geodns

PACKAGE = Path(geodns.__file__).parent

# What each part of the package may import from geodns (itself always allowed;
# the package root `geodns` for __version__ too). The shell (cli, daemon, demo,
# __main__) may import anything and is not listed.
_BASE = {"errors", "timefmt", "steps", "durable"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "timefmt": set(),
    "steps": set(),
    "durable": set(),
    "zone": {"steps"},
    "config": {"zone", "errors", "steps", "geoip"},
    "geoip": set(_BASE),
    "dns": {"zone", "config"} | _BASE,
    "health": {"zone", "config"} | _BASE,
    "cluster": {"zone", "config", "health"} | _BASE,
    "steering": {"zone", "config", "dns", "health", "geoip"} | _BASE,
    "route53": {"zone", "config", "dns", "health", "steering"} | _BASE,
    "api": {"zone", "config", "dns", "health", "steering", "cluster", "route53"} | _BASE,
    # DNS worker processes: the shell of a process that only answers.
    "workers": {"zone", "config", "dns", "health", "steering", "serving", "reloading", "eventloop"} | _BASE,
}
SHELL = {
    "cli",
    "daemon",
    "demo",
    "serving",
    "reloading",
    "eventloop",
    "sdnotify",
    "startup",
    "__main__",
    "__init__",
}

# Pure core: decided from data passed in, `now` included.
PURE = {
    "steps.py",
    "zone",
    "config",
    "dns/answer.py",
    "dns/wire.py",
    "health/health.py",
    "health/capacity.py",
    "health/overrides.py",
    "steering/policy.py",
    "steering/geochoice.py",
    "steering/changes.py",
    "steering/explain.py",
    "route53/model.py",
    "route53/desired.py",
    "route53/plan.py",
    "cluster/votes.py",
    "cluster/governor.py",
    "cluster/report.py",
    "geoip/info.py",
    "geoip/isocodes.py",
}
NOT_PURE = {"config/zonecache.py"}  # the compiled-zone cache on disk lives beside the loader
IMPURE_MODULES = {
    "asyncio",
    "aiohttp",
    "boto3",
    "botocore",
    "dnslib",
    "http",
    "multiprocessing",
    "prometheus_client",
    "selectors",
    "signal",
    "socket",
    "ssl",
    "subprocess",
    "threading",
    "time",
    "urllib",
    "uvloop",
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, at any depth (function-level imports count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "geodns":
                # `from geodns import statefile` names submodules; `__version__` is the root.
                found += [
                    (node.lineno, f"geodns.{a.name}" if a.name != "__version__" else "geodns")
                    for a in node.names
                ]
            else:
                found.append((node.lineno, node.module))
    return found


def _is_pure(rel: Path) -> bool:
    text = rel.as_posix()
    return text not in NOT_PURE and (text in PURE or rel.parts[0] in PURE)


def violations(root: Path) -> list[str]:
    """`file:line: problem` for every import that breaks the layering."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        part = rel.parts[0].removesuffix(".py")
        if part in SHELL:  # the shell may import anything (the cli package too)
            continue
        if part not in ALLOWED:
            problems.append(f"{rel}: {part!r} is not a known part of the layout; add it to ALLOWED")
            continue
        for line, module in _imports(path):
            top = module.split(".")[0]
            if top == "geodns" and module != "geodns":
                target = module.split(".")[1]
                if target != part and target not in ALLOWED[part]:
                    problems.append(f"{rel}:{line}: {part} must not import {module} (upward or sideways)")
            if _is_pure(rel) and top in IMPURE_MODULES:
                problems.append(f"{rel}:{line}: pure module imports {module}")
    return problems


def test_the_package_follows_the_layering() -> None:
    assert violations(PACKAGE) == []


def test_every_subpackage_is_covered_by_the_rules() -> None:
    parts = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert parts <= set(ALLOWED) | SHELL, f"new subpackage without rules: {parts - set(ALLOWED) - SHELL}"


def test_the_checker_catches_forbidden_imports(tmp_path: Path) -> None:
    root = tmp_path / "geodns"
    files = {
        "cli.py": "from geodns.api import admin\n",  # the shell may import anything
        "dns/__init__.py": "",
        "dns/handler.py": "from geodns.dns.answer import resolve\nfrom geodns.api.metrics import Metrics\n",
        "dns/answer.py": "import socket\n",
        "health/__init__.py": "",
        "health/monitor.py": "def f():\n    from geodns.route53 import sync\n",
        "health/health.py": "import time\nfrom geodns import statefile\n",
        "steering/__init__.py": "",
        "steering/policy.py": "from geodns.dns.answer import Client\n",
        "zone/__init__.py": "",
        "zone/zone.py": "from geodns.config.model import Pool\n",
        "config/__init__.py": "",
        "config/zonecache.py": "import os\nimport time\n",  # not pure: allowed
        "config/model.py": "import asyncio\n",
        "stray/__init__.py": "",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert violations(root) == [
        "config/model.py:1: pure module imports asyncio",
        "dns/answer.py:1: pure module imports socket",
        "dns/handler.py:2: dns must not import geodns.api.metrics (upward or sideways)",
        "health/health.py:1: pure module imports time",
        "health/health.py:2: health must not import geodns.statefile (upward or sideways)",
        "health/monitor.py:2: health must not import geodns.route53 (upward or sideways)",
        "stray/__init__.py: 'stray' is not a known part of the layout; add it to ALLOWED",
        "zone/zone.py:1: zone must not import geodns.config.model (upward or sideways)",
    ]
