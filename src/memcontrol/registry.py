"""Name -> class registries, as huggingface/peft registers its tuners: adding a plug-in never edits a central if/elif."""

from __future__ import annotations

from typing import Generic, TypeVar

from memcontrol.errors import UserError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Classes with a ``name`` attribute, found by the value of a command-line ``flag``."""

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
