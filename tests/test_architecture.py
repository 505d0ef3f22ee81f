"""The rooms are real: which package may import which, read from the source with an `ast` walk
(every `import`, `from ... import`, also inside functions, and `importlib.import_module("...")`
with a literal name). Each rule is also checked against a synthetic violation, so a checker
that silently finds nothing fails too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "features", "training", "serving")
SERVING_ROOMS = (
    "serving.http",
    "serving.scoring",
    "serving.review",
    "serving.store",
    "serving.core",
)


@dataclass(frozen=True)
class Rule:
    """Modules under `inside` may not import anything under `forbidden` (prefixes), except
    what is under `allowed` (checked first)."""

    name: str
    inside: str
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()


RULES = (
    Rule("scoring/ never imports http/", "serving.scoring", ("serving.http",)),
    Rule("review/ never imports http/", "serving.review", ("serving.http",)),
    Rule(
        "store/ knows no business rule: nothing of riskgate outside store/",
        "serving.store",
        PACKAGES,
        allowed=("serving.store",),
    ),
    Rule(
        "core/ imports no other serving room (data/ is allowed: the contract)",
        "serving.core",
        ("serving",),
        allowed=("serving.core",),
    ),
    Rule("features/ never imports training/ or serving/", "features", ("training", "serving")),
    Rule("training/ never imports serving/", "training", ("serving",)),
    Rule("data/ imports nothing of riskgate but itself", "data", PACKAGES, allowed=("data",)),
)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in the file, relative ones resolved."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # `from serving import db` imports serving.db
                yield node.lineno, f"{target}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(root: Path, rules: tuple[Rule, ...] = RULES) -> list[str]:
    """Every import that breaks a rule, as 'path:line: module imports target (rule)'."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            for line, target in imports_of(path, root):
                for rule in rules:
                    if not _under(module, rule.inside):
                        continue
                    if any(_under(target, a) for a in rule.allowed):
                        continue
                    if any(_under(target, f) for f in rule.forbidden):
                        where = path.relative_to(root)
                        found.append(f"{where}:{line}: {module} imports {target} ({rule.name})")
    return found


def test_the_packages_keep_their_import_rules():
    assert violations(ROOT) == []


def test_every_serving_module_lives_in_a_room():
    """New code lands in a room; only the entry point and the BentoML shim sit at the top."""
    top = {p.name for p in (ROOT / "serving").glob("*.py")}
    assert top == {"__init__.py", "cli.py", "service.py"}
    for room in SERVING_ROOMS:
        assert (ROOT / Path(*room.split(".")) / "__init__.py").is_file(), room


def test_every_package_init_says_what_lives_there_and_what_it_may_import():
    for init in sorted(ROOT.glob("*/**/__init__.py")):
        if init.parts[len(ROOT.parts)] not in PACKAGES:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init.relative_to(ROOT)} has no docstring"
        assert "import" in doc.lower(), f"{init.relative_to(ROOT)} does not say what it may import"


# -- the checker itself --------------------------------------------------------------------------
def _tree(tmp: Path, files: dict[str, str]) -> Path:
    for package in PACKAGES:
        (tmp / package).mkdir(parents=True, exist_ok=True)
        (tmp / package / "__init__.py").touch()
    for name, text in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    return tmp


@pytest.mark.parametrize(
    ("name", "text", "rule"),
    [
        ("serving/scoring/x.py", "from serving.http import api\n", "scoring/ never imports http/"),
        ("serving/review/x.py", "def f():\n    import serving.http.api\n", "review/ never"),
        ("serving/review/simulate/x.py", "from ...http import runtime\n", "review/ never"),
        ("serving/store/x.py", "from serving.scoring.policy import decide\n", "store/ knows"),
        ("serving/store/x.py", "import training.model\n", "store/ knows"),
        ("serving/core/x.py", "from serving import scoring\n", "core/ imports"),
        ("features/x.py", "from training import drift\n", "features/ never"),
        ("features/x.py", "from serving.core.schemas import PaymentIn\n", "features/ never"),
        (
            "training/x.py",
            "import importlib\nimportlib.import_module('serving.cli')\n",
            "training/",
        ),
        ("data/x.py", "def f():\n    from features.registry import available\n", "data/ imports"),
    ],
)
def test_the_checker_reports_a_synthetic_violation(tmp_path, name, text, rule):
    found = violations(_tree(tmp_path, {name: text}))
    assert len(found) >= 1, found
    assert all(rule in v for v in found), found
    assert found[0].startswith(name), found


def test_the_checker_accepts_what_the_rules_allow(tmp_path):
    allowed = {
        "serving/http/x.py": "from serving.scoring import scorer\nfrom ..review import queue\n",
        "serving/review/x.py": "from serving.scoring.capacity import CapacityConfig\n",
        "serving/store/x.py": "from serving.store import db\nfrom . import db as again\n",
        "serving/core/x.py": "from data.schema import CURRENCIES\n",
        "features/x.py": "from data.schema import COLUMNS\n",
        "data/simulator/x.py": "from data.schema import validate\nfrom .. import schema\n",
    }
    assert violations(_tree(tmp_path, allowed)) == []
