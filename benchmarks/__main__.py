"""`python -m benchmarks`: run the suite (options: `python -m benchmarks --help`)."""

from benchmarks.suite import main

raise SystemExit(main())
