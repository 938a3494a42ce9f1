"""A message becomes a sealed case: MIME parsing under limits, HTML to text, dates, fact
extraction, sender checks, reporter redaction, and ingest (exactly once, poison held apart).

By job: ``mime``, ``htmltext``, ``dates``, ``sender`` and ``redact`` read a message;
``extract`` (over ``labels`` and ``names``, one module per source: ``encompass``, ``lesson``,
``whistle``) finds its facts; ``prepare`` turns one message's bytes into a case to seal (in the
worker processes of ``workers``); ``new_cases`` seals, stores and schedules new cases (what
ingest and manual entry call); ``ingest`` stores each batch exactly once, and ``poison`` keeps
count of tries, quarantines and holds the messages that cannot be read.

May import the vocabulary, ``sgalert.rules``, ``sgalert.records`` and ``sgalert.routing`` (a new
case is scheduled as it is stored).
"""
