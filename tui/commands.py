"""The command palette: every action on the current screen and every app-wide action, by name.

The list is built from the live bindings (so it can never drift from the keys) plus the app's
actions that have no key on the current screen.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

# App-wide actions reachable from any screen: (label, action, help).
APP_ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("Rota: who is on duty, gaps, covers", "open_rota", "Open the rota screen"),
    ("New case: record a phoned notification", "new_case", "Manual entry"),
    ("Audit log and chain verification", "open_audit", "DSLs and the headteacher"),
    ("Unlock", "unlock", "Unlock your key to read cases"),
    ("Lock now", "lock", "Forget your key"),
    ("Help: key bindings", "help", "Every key on this screen"),
    ("Toggle light/dark theme", "toggle_theme", "Switch between the light and dark themes"),
)


class DeskCommands(Provider):
    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        found: list[tuple[str, str, Callable[[], Any]]] = []
        seen: set[str] = set()
        for active in self.screen.active_bindings.values():
            binding = active.binding
            # Widgets' own movement keys have no id; the desk's actions all do.
            if not binding.id or not binding.description or binding.system or not active.enabled:
                continue
            action = binding.action.removeprefix("app.")
            if action in seen or action == "command_palette":
                continue
            seen.add(action)
            label = binding.description
            if binding.tooltip and binding.tooltip.lower() != label.lower():
                label = f"{label}: {binding.tooltip}"
            key = self.app.get_key_display(binding)
            found.append(
                (label, f"key {key}", partial(self.app.run_action, binding.action, active.node))
            )
        for label, action, help_text in APP_ACTIONS:
            if action not in seen and self.app.check_action(action, ()) is not False:
                seen.add(action)
                found.append((label, help_text, partial(self.app.run_action, action)))
        return found

    async def discover(self) -> Hits:
        for label, help_text, command in self._commands():
            yield DiscoveryHit(label, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for label, help_text, command in self._commands():
            score = matcher.match(label)
            if score > 0:
                yield Hit(score, matcher.highlight(label), command, help=help_text)
