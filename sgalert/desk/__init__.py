"""What people see and do: the state changes of a case, the read models the TUI and CLI show,
export, the child file, and the service façade that is the TUI's and CLI's one door.

May import every layer below (vocabulary, rules, records, routing, intake); never the engine or
the CLI.
"""
