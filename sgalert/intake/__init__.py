"""A message becomes a sealed case: MIME parsing under limits, HTML to text, dates, fact
extraction, sender checks, reporter redaction, and ingest (exactly once, poison held apart).

May import the vocabulary, ``sgalert.rules``, ``sgalert.records`` and ``sgalert.routing`` (a new
case is scheduled as it is stored).
"""
