"""Streaming a growing LLM answer to a visitor as ``robot.stream`` frames."""

from __future__ import annotations

import time

from weiyu.realtime import publish_event_now

#: seconds between two ``robot.stream`` frames of one answer
STREAM_INTERVAL_S = 0.1


class AnswerStreamer:
    """Sends the growing answer to the visitor as ``robot.stream`` frames, at most one per
    :data:`STREAM_INTERVAL_S`."""

    def __init__(self, conversation_id: int, stream_id: str, visitor_key: str) -> None:
        self.conversation_id, self.stream_id, self.key = conversation_id, stream_id, visitor_key
        self.text = ""
        self.sent_at = 0.0

    def __call__(self, delta: str) -> None:
        self.text += delta
        now = time.monotonic()
        if now - self.sent_at >= STREAM_INTERVAL_S:
            self.flush()
            self.sent_at = now

    def flush(self) -> None:
        publish_event_now(
            {
                "type": "robot.stream",
                "conversation_id": self.conversation_id,
                "stream_id": self.stream_id,
                "text": self.text,
            },
            [self.key],
        )
