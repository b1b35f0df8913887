"""The names watchkeeper gives columns and categories of its own: one definition each.

A reference profile, a window summary, a loss model and the console all name the
prediction, its class and the label as if they were features, and fold rare and unseen
categories into named buckets. Every module reads the names from here (imports nothing of
ours), so no two spellings can drift apart. The ingestion layer refuses a logged feature
of one of these names (``reserved_name``, ``daemon/ingest/admission.py``).

>>> PREDICTION, PREDICTION_CLASS, LABEL
('__prediction__', '__prediction_class__', '__label__')
"""

from __future__ import annotations

from typing import Final

PREDICTION: Final = "__prediction__"
"""The prediction (the model's score or value), as a column of a profile or window."""
PREDICTION_CLASS: Final = "__prediction_class__"
"""The predicted class, when the model logs one beside its score."""
LABEL: Final = "__label__"
"""The ground-truth label, once joined to its prediction."""

OTHER: Final = "__other__"
"""The bucket of categories too rare in the reference to keep their own (binning, the
loss model's category codes)."""
UNSEEN: Final = "__unseen__"
"""The bucket of current categories the reference never saw (binning)."""
