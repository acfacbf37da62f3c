"""The mapped fields of a decoded JSON record, read by a function compiled once per record shape.

`flatten` walks every key of every record and builds every dotted name; on ECS lines that walk
was a quarter of the parse. A log repeats a few shapes, so for each shape met (its top-level
keys, then the keys of each nested object on the way to a mapped field) a reader is generated
that checks the record still has that shape and picks the mapped fields straight out of it.

A reader gives exactly what `flatten` gives for the names the mapping reads (`NEEDED`), or None
when the record is not of its shape; the caller then flattens as before. Objects the mapping
cannot reach (`agent`, `ecs`, ...) are neither read nor checked: nothing under them can become a
mapped name. A shape where two paths give the same name (`{"user.name": .., "user": {"name": ..}}`,
where the later wins) is left to `flatten`.
"""

from __future__ import annotations

from typing import Any, Callable

Reader = Callable[[dict], "dict[str, Any] | None"]

# Values flatten keeps as they are; any other type (a nested object where the shape had a value)
# sends the record back to flatten.
_LEAF_TYPES = frozenset((str, int, float, bool, list, type(None)))
MAX_SHAPES = 1024  # per reader cache; a log of more shapes than this is flattened
MAX_PER_TOP = 8  # shapes sharing one set of top-level keys (optional nested fields)


class ShapeReaders:
    """Readers of the names in `needed`, compiled per shape as records show them."""

    def __init__(self, needed: frozenset[str], tag: Callable[[frozenset[str]], Any] = lambda names: names):
        """`tag(names present)` is what a caller keeps with each shape (its field plan)."""
        self.needed = needed
        self.tag = tag
        # "source.", "source.geo.", ...: the objects on the way to a needed name.
        self.prefixes = frozenset(name[: i + 1] for name in needed for i, c in enumerate(name) if c == ".")
        self._by_top: dict[tuple, list[tuple[Reader, Any]]] = {}
        self._count = 0

    def read(self, doc: dict) -> tuple[dict[str, Any], Any] | None:
        """(the needed names' values, the shape's tag) or None: flatten this record."""
        top = tuple(doc)
        shapes = self._by_top.get(top)
        if shapes is not None:
            for reader, tag in shapes:
                values = reader(doc)
                if values is not None:
                    return values, tag
        if self._count >= MAX_SHAPES or (shapes is not None and len(shapes) >= MAX_PER_TOP):
            return None
        reader, names = compile_reader(doc, self.needed, self.prefixes) or (_never, frozenset())
        self._count += 1
        tag = self.tag(names)
        # Newest first: a log that changes shape reads its new shape at the first try.
        self._by_top.setdefault(top, []).insert(0, (reader, tag))
        values = reader(doc)
        return None if values is None else (values, tag)


def _never(doc: dict) -> None:
    return None


def compile_reader(doc: dict, needed: frozenset[str], prefixes: frozenset[str]) -> tuple[Reader, frozenset[str]] | None:
    """A reader for records shaped as `doc` and the names it gives, or None when the shape is
    not one to compile."""
    checks: list[tuple[str, str, str, frozenset]] = []  # (variable, parent variable, key, keys it must have)
    fetches: dict[str, tuple[str, str]] = {}  # name -> (parent variable, key)
    constants: dict[str, Any] = {}

    def walk(obj: dict, var: str, prefix: str) -> bool:
        for key, item in obj.items():
            if type(key) is not str:
                return False
            name = f"{prefix}{key}"
            if type(item) is dict and item:
                if f"{name}." not in prefixes:
                    if name in needed:
                        return False  # an object where a value is mapped: unchecked, it could become one
                    continue  # nothing needed lies under it
                child = f"d{len(checks)}"
                checks.append((child, var, key, frozenset(item)))
                if not walk(item, child, f"{name}."):
                    return False
            elif name in needed or f"{name}." in prefixes:
                if name in fetches:
                    return False  # two paths to one name: flatten's order decides
                fetches[name] = (var, key)
            elif type(item) not in _LEAF_TYPES:
                return False  # a Mapping that is not a dict: flatten's own rules
        return True

    if not walk(doc, "doc", ""):
        return None
    lines = ["def read(doc):"]

    def const(value: Any) -> str:
        # Keys come from the log: they enter the generated code as bound constants, never as text.
        ident = f"c{len(constants)}"
        constants[ident] = value
        return ident

    for var, parent, key, keys in checks:
        lines.append(f"    {var} = {parent}[{const(key)}]")
        lines.append(f"    if type({var}) is not dict or {var}.keys() != {const(keys)}: return None")
    pairs = ", ".join(f"{const(name)}: {parent}[{const(key)}]" for name, (parent, key) in fetches.items())
    lines.append(f"    values = {{{pairs}}}")
    lines.append("    if not LEAF_TYPES.issuperset(map(type, values.values())): return None")
    lines.append("    return values")
    namespace = {"LEAF_TYPES": _LEAF_TYPES, "dict": dict, "type": type, "map": map, **constants}
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from identifiers made here only
    return namespace["read"], frozenset(fetches)
