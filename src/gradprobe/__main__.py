"""`python -m gradprobe` is the same as the `gradprobe` console script."""

from gradprobe.cli import main

raise SystemExit(main())
