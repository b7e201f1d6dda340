"""A registry by name: the one shape of the method registry (:data:`hrf_core.methods.METHODS`) and the model family
registry (:data:`hrf_core.models.families.FAMILIES`). Imports nothing of the library."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """A dict of items by their ``name``, in the order they were added. ``kind`` names the items in errors
    ("method", "model family")."""

    def __init__(self, kind: str, items=()):
        super().__init__((item.name, item) for item in items)
        self.kind = kind

    def register(self, item: T) -> T:
        """Add ``item`` under its name (a name already taken is refused); returns it."""
        if item.name in self:
            raise ValueError(f"{self.kind} {item.name!r} is registered already")
        self[item.name] = item
        return item

    def unregister(self, name: str) -> None:
        """Remove an item :meth:`register` added (tests)."""
        self.pop(name, None)
