"""The sealed records: the SQLite store and its migrations, the crypto and the keyring, cases,
their chronology, the hash-chained audit log, system alerts and who may read a case.

Everything personal is sealed here and nowhere else. May import the shared vocabulary and
``sgalert.rules``; never routing, intake, desk, engine or cli.
"""
