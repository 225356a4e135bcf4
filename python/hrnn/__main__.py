"""``python -m hrnn``: the command line."""

from hrnn.cli import main

raise SystemExit(main())
