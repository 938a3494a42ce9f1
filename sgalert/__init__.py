"""sgalert: a safeguarding alert router for schools.

The core package. It must never import ``integrations``, ``tui``, textual, msal, exchangelib or
httpx: the engine and the CLI run without a UI, and the layering test enforces it.
"""

__version__ = "0.1.0"
