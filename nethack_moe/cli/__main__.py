"""`python -m nethack_moe.cli` = `nethack-moe`."""

from nethack_moe.cli.app import main

raise SystemExit(main())
