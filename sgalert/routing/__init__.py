"""Who is paged, when, and on which channel: who is on duty, escalation timers, statutory
warnings, the outbox with its retries and fallbacks, calendar run-out alerts.

Works on metadata only and never decrypts. May import the vocabulary, ``sgalert.rules`` and
``sgalert.records``.
"""
