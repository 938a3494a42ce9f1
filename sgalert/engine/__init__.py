"""The always-on engine: the serve loop (lease, timers, outbox), the mailbox watchers and the
replies mailbox.

It holds no private keys and never decrypts. May import every layer below it but never the desk's
service façade: it works through intake and the state changes, not through what people use.
"""
