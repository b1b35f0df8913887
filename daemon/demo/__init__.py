"""``watchkeeper demo``: the whole product on one machine, on a timeline of faults.

Owns the demo runner (:mod:`.run`), its set-up (:mod:`.setup`), timeline (:mod:`.timeline`)
and terminal view (:mod:`.view`), the synthetic model server (:mod:`.synthetic`) and the
embedded Tansu broker the demo and the tests start (:mod:`.broker`).

May import anything of ``daemon`` (it is the top layer), ``detectors``, ``policies``,
``alerts``.
"""

from __future__ import annotations
