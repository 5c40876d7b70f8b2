"""`python -m voxgate`."""

from voxgate.cli import main

raise SystemExit(main())
