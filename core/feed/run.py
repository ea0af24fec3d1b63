"""The run result (`risk-result/1`) of a feed: the run's own, with the feed's refused messages in
its `refused` list, each with its sequence number and the field at fault."""

from __future__ import annotations

from typing import Any

from core.engine.result import ResultCollector
from core.feed.consumer import FeedRun


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
    result["feed"] = {"messages": run.last_seq, "refused": len(run.refused)}
    return result
