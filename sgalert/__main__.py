"""``python -m sgalert`` runs the command-line interface."""

from sgalert.cli.main import main

raise SystemExit(main())
