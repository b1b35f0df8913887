"""Offline uses of the detectors: reference profiles from files, drift of a batch file.

Owns reading data files in chunks (:mod:`.data_files`), building references
(:mod:`.reference`) and scoring a file / Evidently reports (:mod:`.drift`), used by the
CLI and by the daemon's report pages.

May import: ``daemon.checks`` and everything below it, ``detectors``, ``policies``,
``alerts``.
"""

from __future__ import annotations
