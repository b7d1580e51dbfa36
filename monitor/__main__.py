"""``python -m monitor`` is the ``modelarts-monitor`` command."""

from monitor.cli import main

raise SystemExit(main())
