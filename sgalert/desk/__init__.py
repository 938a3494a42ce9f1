"""What people see and do: the state changes of a case, the read models the TUI and CLI show,
export, the child file, and the service façade that is the TUI's and CLI's one door.

- ``transitions``: every state change, one write transaction each with its check;
- ``access``: the content-key check and audited refusals, shared by all of them;
- ``views`` (queue, counts, banners, the audit log), ``case_view``, ``notification_history``,
  ``attachments``, ``child_file``: what people see, and export (``export`` writes the copy);
- ``service``: the façade, which opens the store, holds config, plan and clock, and delegates.

May import every layer below (vocabulary, rules, records, routing, intake); never the engine or
the CLI.
"""
