"""``python -m watchkeeper.daemon`` is the ``watchkeeper`` command."""

from __future__ import annotations

import sys

from watchkeeper.daemon.cli.main import main

sys.exit(main())
