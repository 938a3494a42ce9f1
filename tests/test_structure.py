"""The core's layout is its architecture: each layer imports only the layers below it.

The order (lowest first) is the one ``sgalert/__init__.py`` describes. Imports inside functions
count too: a late import is still a dependency. The façade (``sgalert.desk.service``) is for the
TUI and the CLI only; the engine, intake and routing work through the records and state changes.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "sgalert"

# Lowest first. The top-level modules and ``rules`` are the shared vocabulary.
LAYERS = ("vocabulary", "records", "routing", "intake", "desk", "engine", "cli")
RULES_MAY_IMPORT = {"sgalert.model", "sgalert.errors", "sgalert.clock", "sgalert.text"}
MAX_LINES = 700

# Known debts, each to be paid by the restructure issue; the tests fail if one is paid and
# still listed, so the lists only ever shrink.
BACKWARD_TODAY: set[tuple[str, str]] = set()
OVERSIZE_TODAY: dict[str, int] = {}
FACADE_USERS_TODAY: set[str] = set()


def layer_of(module: str) -> str:
    if module == "sgalert.__main__":
        return "cli"
    parts = module.split(".")
    if len(parts) > 2 and parts[1] in LAYERS:
        return parts[1]
    return "vocabulary"


def core_modules() -> dict[str, Path]:
    found = {}
    for path in sorted(CORE.rglob("*.py")):
        rel = path.relative_to(CORE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def sgalert_imports(path: Path) -> set[str]:
    """Every ``sgalert`` module this file imports, at any depth of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    known = core_modules()
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "sgalert"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "sgalert":
                continue
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in known else node.module)
    return out


def backward_imports() -> set[tuple[str, str]]:
    found = set()
    for module, path in core_modules().items():
        here = LAYERS.index(layer_of(module))
        for target in sgalert_imports(path):
            if target == "sgalert":
                continue  # __version__
            upward = LAYERS.index(layer_of(target)) > here
            impure_rule = module.startswith("sgalert.rules") and not (
                target.startswith("sgalert.rules") or target in RULES_MAY_IMPORT
            )
            if upward or impure_rule:
                found.add((module, target))
    return found


def test_each_layer_imports_only_the_layers_below() -> None:
    found = backward_imports()
    new = sorted(found - BACKWARD_TODAY)
    paid = sorted(BACKWARD_TODAY - found)
    assert new == [], "imports against the layer order:\n" + "\n".join(
        f"{a} -> {b}" for a, b in new
    )
    assert paid == [], f"no longer imported; remove from BACKWARD_TODAY: {paid}"


def test_only_the_tui_and_cli_use_the_facade() -> None:
    users = {
        module
        for module, path in core_modules().items()
        if "sgalert.desk.service" in sgalert_imports(path)
        and not module.startswith(("sgalert.cli", "sgalert.desk", "sgalert.__main__"))
    }
    assert sorted(users - FACADE_USERS_TODAY) == [], "the façade is for the TUI and CLI only"
    paid = sorted(FACADE_USERS_TODAY - users)
    assert paid == [], f"no longer uses the façade; remove from FACADE_USERS_TODAY: {paid}"


def test_no_core_module_is_too_long_to_read() -> None:
    sizes = {
        module: len(path.read_text(encoding="utf-8").splitlines())
        for module, path in core_modules().items()
    }
    over = {m: n for m, n in sizes.items() if n > MAX_LINES}
    grown = {m: n for m, n in over.items() if n > OVERSIZE_TODAY.get(m, MAX_LINES)}
    paid = sorted(m for m in OVERSIZE_TODAY if sizes.get(m, 0) <= MAX_LINES)
    assert grown == {}, f"over {MAX_LINES} lines (split by job): {grown}"
    assert paid == [], f"now within {MAX_LINES} lines; remove from OVERSIZE_TODAY: {paid}"


def test_a_case_changes_state_only_in_the_transitions() -> None:
    """Acknowledging or closing is written in one place, whichever door it came through (the
    desk, a reply to a page): two copies of a state change drift apart."""
    writers = {
        module
        for module, path in core_modules().items()
        if re.search(r"UPDATE\s+cases\s+SET\s+state\b", path.read_text(encoding="utf-8"))
    }
    assert writers == {"sgalert.desk.transitions"}


def test_the_layer_check_sees_what_it_claims_to(tmp_path: Path) -> None:
    """A routing module importing the desk is caught, and so is a late import in a function."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from sgalert.records import audit\n"
        "def later():\n"
        "    from sgalert.desk.service import CaseService\n"
    )
    assert sgalert_imports(sample) == {"sgalert.records.audit", "sgalert.desk.service"}
    assert layer_of("sgalert.desk.service") == "desk" and layer_of("sgalert.config") == "vocabulary"
    assert layer_of("sgalert.rules.rota") == "vocabulary"


TUI = CORE.parent / "tui"
# What the desk may name from the core: the façade (and the types in its signatures, which it
# re-exports), the read models, and the shared vocabulary of values and errors.
TUI_MAY_IMPORT = {
    "sgalert.desk.service",
    "sgalert.desk.views",
    "sgalert.model",
    "sgalert.errors",
    "sgalert.clock",
    "sgalert.text",
}


def tui_imports_beyond_the_facade(root: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        beyond = {
            target
            for target in sgalert_imports(path)
            if not any(target == ok or target.startswith(ok + ".") for ok in TUI_MAY_IMPORT)
        }
        if beyond:
            found[str(path.relative_to(root))] = beyond
    return found


def test_the_tui_talks_to_the_core_through_the_facade_only() -> None:
    """The desk shows what the core decides: a TUI that reaches past the façade starts making
    its own rules (deadlines, who may see what), and the two drift apart."""
    assert tui_imports_beyond_the_facade(TUI) == {}


def test_the_tui_check_sees_a_reach_past_the_facade(tmp_path: Path) -> None:
    (tmp_path / "screen.py").write_text(
        "from sgalert.desk.service import CaseService\n"
        "from sgalert.model import Role\n"
        "def later():\n"
        "    from sgalert.routing.duty import load_rota\n"
    )
    assert tui_imports_beyond_the_facade(tmp_path) == {"screen.py": {"sgalert.routing.duty"}}
