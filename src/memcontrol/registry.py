"""Name -> plug-in registries, as huggingface/peft registers its tuners: adding a plug-in never edits a central if/elif.

A plug-in is a class or an instance with a ``name`` attribute (a PEFT method class, an objective, a pick rule ...)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from memcontrol.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Plug-ins with a ``name`` attribute, found by the value of a command-line ``flag``."""

    def __init__(self, kind: str, flag: str):
        self.kind, self.flag, self._classes = kind, flag, {}

    def register(self, cls: T) -> T:
        """Class decorator; refuses empty and duplicate names."""
        if not cls.name or cls.name in self._classes:
            raise ValueError(f"{self.kind} name {cls.name!r} is empty or already registered")
        self._classes[cls.name] = cls
        return cls

    def get(self, name: str) -> T:
        if name not in self._classes:
            raise UserError(f"{self.flag}: unknown {self.kind} {name!r}; expected one of {', '.join(self.names())}")
        return self._classes[name]

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __iter__(self) -> Iterator[T]:
        """The plug-ins in the order they were registered (the order outputs list them in)."""
        return iter(self._classes.values())
