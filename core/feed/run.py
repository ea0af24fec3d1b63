"""The run result (`risk-result/1`) of a feed: the run's own, with the feed's refused messages in
its `refused` list, each with its sequence number and the field at fault, and the keys admins
registered among its `actions`."""

from __future__ import annotations

from typing import Any

from core.engine.result import ResultCollector
from core.feed.consumer import REGISTER_KEY, FeedRun
from core.model.events import iso


def feed_result(run: FeedRun, collector: ResultCollector) -> dict[str, Any]:
    result = collector.result()
    result["refused"] = [
        *result["refused"],
        *(
            {
                "time": None,
                "operator": None,
                "action": None,
                "code": "bad_message",
                "reason": f"message {r.seq} ({r.kind}): {r.field}: {r.reason}",
                "request": None,
                "seq": r.seq,
                "field": r.field,
            }
            for r in run.refused
        ),
    ]
    # A registration is an operator's command like the engine's actions, listed with them in time
    # order (sorted is stable: at one time the engine's actions come first, as they applied).
    registrations = [
        {
            "time": iso(r.time),
            "operator": r.operator,
            "action": REGISTER_KEY,
            "reason": r.reason,
            "detail": f"public key of {r.subject}: {r.public_key}",
            "request": None,
            "seq": r.seq,
            "subject": r.subject,
            "public_key": r.public_key,
        }
        for r in run.registrations
    ]
    result["actions"] = sorted([*result["actions"], *registrations], key=lambda a: a["time"])
    result["feed"] = {
        "messages": run.last_seq,
        "refused": len(run.refused),
        "keys_registered": len(run.registrations),
    }
    return result
