"""The rules the school and the law set: terms and holidays, the duty rota, escalation policies
and statutory clocks.

Pure values and arithmetic: no store, no I/O, no clock of their own. May import only the shared
vocabulary (``sgalert.model``, ``sgalert.errors``, ``sgalert.clock``).
"""
