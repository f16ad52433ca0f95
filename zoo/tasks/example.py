"""One labelled example of a task."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Example:
    """Text fields by name and the class index.

    `text` and (for pair tasks) `text_b` are what a classification head reads;
    templates may use any field. `where` is `path:line`, for error messages.
    """

    fields: dict = field(hash=False)
    label: int
    where: str = ""

    @property
    def text(self) -> str:
        return self.fields["text"]

    @property
    def text_b(self) -> str | None:
        return self.fields.get("text_b")
