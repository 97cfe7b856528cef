"""Prefect events that tell a served pipeline (``tatar serve``) its data changed.

``tatar data import`` emits ``tatar.data.changed``; the deployment in ``flows/deployment.py`` has a trigger on it.
Without a Prefect API (``PREFECT_API_URL`` unset) there is nobody to tell, so emitting is a no-op.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_CHANGED = "tatar.data.changed"


def emit_data_changed(dataset: str, path: str | Path) -> bool:
    """Emit ``tatar.data.changed`` for ``dataset``; True when an event was sent to a Prefect API."""
    if not os.environ.get("PREFECT_API_URL"):
        return False
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    event = emit_event(
        event=DATA_CHANGED,
        resource={"prefect.resource.id": f"tatar.dataset.{dataset}", "prefect.resource.name": dataset},
        payload={"path": str(path)},
    )
    EventsWorker.drain_all()  # a CLI process exits right after; make sure the event left
    return event is not None
