"""``python -m monitor`` is the ``modelarts-monitor`` command."""

from monitor.cli.main import main

raise SystemExit(main())
