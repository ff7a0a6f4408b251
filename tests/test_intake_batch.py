"""One batch of offered files: each queued or refused file announced, one summary event."""

from __future__ import annotations

from daemon import events as ev
from daemon.bus import EventBus
from daemon.intake import Batch
from tests.helpers import Home


def test_a_batch_announces_what_was_queued_and_refused_and_counts_duplicates(
        home: Home) -> None:
    ctx = home.context()
    bus = EventBus()
    seen: list[ev.Event] = []
    bus.subscribe("test", seen.append)
    good, etalon = home.update(), home.update(etalon=True)
    bad = home.root / "8502182-20201027172021.wwz"
    bad.write_bytes(b"not a zip")
    batch = Batch("manual")
    for path in (good, etalon, good, bad):
        batch.add(ctx.intake.import_path(path, "manual"), bus)
    bus.publish(batch.event())
    bus.close()
    assert [type(e).__name__ for e in seen] == [
        "UpdateQueued", "UpdateQueued", "UpdateRejected", "BatchFinished"]
    queued = [e for e in seen if isinstance(e, ev.UpdateQueued)]
    assert [(e.name, e.dossier, e.origin, e.etalon) for e in queued] == [
        (good.name, "8502182", "manual", False), (etalon.name, "8502182", "manual", True)]
    last = seen[-1]
    assert isinstance(last, ev.BatchFinished)
    assert (last.origin, last.queued, last.rejected, last.duplicates) == (
        "manual", (good.name, etalon.name), (bad.name,), 1)
