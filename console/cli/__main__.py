"""`python -m console.cli`: the command line."""

from console.cli.main import main

raise SystemExit(main())
