"""Name -> plug-in registries, as huggingface/peft registers its tuners: adding a plug-in never edits a central if/elif.

A plug-in is a class or an instance with a ``name`` attribute (a PEFT method class, an objective, a pick rule ...).
A plug-in class may declare its options as a dataclass (``config_class``) whose fields are its flags and YAML keys:
the command line and the YAML files take them from here (``memcontrol.config``), so that a new plug-in is one file.
Option names are flat, as every flag is: two plug-ins may share an option only when they mean the same by it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from memcontrol.errors import UserError

T = TypeVar("T")
Option = tuple[type, dataclasses.Field]  # a plug-in option: the dataclass that declares it, and its field


class Registry(Generic[T]):
    """Plug-ins with a ``name`` (classes with options have a ``config_class``, a subclass of ``config_base``), found by
    a command-line ``flag``."""

    every: ClassVar[list[Registry]] = []  # every registry made, in order: the plug-in families the CLI lists

    def __init__(self, kind: str, flag: str, config_base: type | None = None):
        self.kind, self.flag, self.config_base, self._classes = kind, flag, config_base, {}
        Registry.every.append(self)

    def register(self, cls: T) -> T:
        """Class decorator; refuses empty and duplicate names, and options another plug-in declares otherwise."""
        if not cls.name or cls.name in self._classes:
            raise ValueError(f"{self.kind} name {cls.name!r} is empty or already registered")
        if self.config_base is not None:
            config = cls.config_class
            if not (dataclasses.is_dataclass(config) and issubclass(config, self.config_base)):
                raise ValueError(
                    f"{self.kind} {cls.name!r}: config_class must be a dataclass extending {self.config_base.__name__}"
                )
            _refuse_clashes(f"{self.kind} {cls.name!r}", config)
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

    def config_classes(self) -> dict[str, type]:
        """Each registered plug-in's options dataclass, by name (empty for a registry without options)."""
        if self.config_base is None:
            return {}
        return {name: self._classes[name].config_class for name in self.names()}

    def options(self, name: str, values: Mapping[str, Any] | Any | None = None) -> Any:
        """The options of plug-in ``name`` from ``values``: its own config (returned as it is), another options
        dataclass of this registry, or a mapping of option values by name (a TrainConfig's ``plugin_options``, a
        manifest's ``config``), of which it takes its own fields (defaults for absent ones)."""
        config = self.get(name).config_class
        if isinstance(values, config):
            return values
        if isinstance(values, self.config_base):
            values = dataclasses.asdict(values)
        elif values is not None and not isinstance(values, Mapping):
            raise TypeError(
                f"{self.kind} options: expected an options dataclass or a mapping, got {type(values).__name__}"
            )
        values = values or {}
        return config(**{f.name: values[f.name] for f in dataclasses.fields(config) if f.name in values})


def option_groups(kinds: Sequence[str] | None = None) -> dict[str, list[Option]]:
    """The options of the plug-ins of ``kinds`` (default: every kind), as ``--help`` groups them: a family's shared
    options, then each plug-in's own (under every name that has the same options class: ``--sampler gp, tpe``); an
    option two plug-ins share is listed once, where it comes first."""
    groups: dict[str, list[Option]] = {}
    seen: set[str] = set()
    registries = Registry.every if kinds is None else [registry_of(kind) for kind in kinds]
    for registry in registries:
        if registry.config_base is None:
            continue
        shared = {f.name for f in dataclasses.fields(registry.config_base)}
        named = [(f"{registry.kind} options (every {registry.flag})", registry.config_base)]
        names_of: dict[type, list[str]] = {}
        for name, config in registry.config_classes().items():
            names_of.setdefault(config, []).append(name)
        named += [(f"{registry.flag} {', '.join(names)}", config) for config, names in names_of.items()]
        for title, config in named:
            own = [
                f
                for f in dataclasses.fields(config)
                if f.name not in seen and (config is registry.config_base or f.name not in shared)
            ]
            seen.update(f.name for f in own)
            if own:
                groups[title] = [(config, f) for f in own]
    return groups


def declared_options(kinds: Sequence[str] | None = None) -> dict[str, Option]:
    """The options of the plug-ins of ``kinds`` (default: every kind), by name."""
    return {f.name: (config, f) for options in option_groups(kinds).values() for config, f in options}


def registry_of(kind: str) -> Registry:
    """The registry of plug-ins of ``kind`` ("method", "mitigation" ...); its package must have been imported."""
    found = [r for r in Registry.every if r.kind == kind]
    if not found:
        raise LookupError(
            f"no {kind} registry: import the package that defines it (memcontrol.peft, memcontrol.mitigations)"
        )
    return found[0]


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _meaning(f: dataclasses.Field) -> tuple:
    """What a field means as a flag: its type (as written, whether or not annotations are strings), default and help."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", None) or str(f.type)
    return kind, repr(_default(f)), repr(dict(f.metadata))


def _refuse_clashes(owner: str, config: type) -> None:
    """Refuse an option of ``config`` that a registered plug-in declares with another type, default or help."""
    declared = declared_options()
    for f in dataclasses.fields(config):
        if f.name in declared and _meaning(declared[f.name][1]) != _meaning(f):
            raise ValueError(
                f"{owner}: option --{f.name} is already declared, with another meaning, by another plug-in"
            )


def plugin_values(values: Mapping[str, Any], kinds: Sequence[str]) -> dict[str, Any]:
    """Every option of the plug-ins of ``kinds``: ``values`` over the defaults."""
    return {**{name: _default(f) for name, (_, f) in declared_options(kinds).items()}, **values}
