"""sgalert: a safeguarding alert router for schools.

The core package. It must never import ``integrations``, ``tui``, textual, msal, exchangelib or
httpx: the engine and the CLI run without a UI, and the layering test enforces it.

The layout is the architecture, lowest layer first (a layer imports only the ones before it;
``tests/test_layering.py`` holds it so):

- the shared vocabulary at the top level: ``model``, ``errors``, ``clock``, ``text``, ``logs``,
  ``secrets``, ``workspace``, ``config`` and ``ports`` (what adapters implement), with
  ``rules`` (terms, rota, escalation policies, statutory clocks: pure, no storage);
- ``records``: the sealed store (crypto, keys, cases, chronology, the audit chain, alerts);
- ``routing``: who is paged when (duty, escalation timers, the outbox);
- ``intake``: a message becomes a sealed case (MIME, extraction, redaction, ingest);
- ``desk``: what people see and do (state changes, read models, the service façade);
- ``engine``: the always-on loop and the mailbox watchers;
- ``cli``: the commands.
"""

__version__ = "0.1.0"
