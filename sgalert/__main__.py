"""``python -m sgalert`` runs the command-line interface."""

from sgalert.cli import main

raise SystemExit(main())
