"""Region messages: what goes on the queue (one queue per model)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["RegionMessage", "queue_name"]


class RegionMessage(BaseModel):
    """Points at one region row; the database holds everything else about it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str
    image_idx: int
    region_idx: int

    @property
    def id(self) -> str:
        """Deterministic message id: publishing a region twice enqueues it once."""
        return f"{self.job_id}:{self.image_idx}:{self.region_idx}"

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, body: bytes) -> RegionMessage:
        return cls.model_validate_json(body)


def queue_name(model: str) -> str:
    """The queue that carries regions for ``model``; workers lease only for models they serve."""
    return f"regions-{model}"
