"""``python -m app``: the same as ``invokeai-gateway``."""

from app.cli import main

raise SystemExit(main())
