"""``python -m swarmlink.daemon --home H --listen HOST:PORT --log-level L``."""

from __future__ import annotations

from ._main import main

raise SystemExit(main())
