"""``python -m sgalert`` runs the command-line interface."""

from sgalert.cli.entry import main

raise SystemExit(main())
