"""The ``watchkeeper`` command line: one module per command group.

Owns argument parsing and dispatch (:mod:`.main`), the shared config loading
(:mod:`.common`) and the commands (:mod:`.detect`, :mod:`.policy`, :mod:`.backtest`,
:mod:`.shadow`, :mod:`.silence`).

May import anything of ``daemon`` (it is the top layer), ``detectors``, ``policies``,
``alerts``.
"""

from __future__ import annotations
