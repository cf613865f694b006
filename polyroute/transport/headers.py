"""Response headers: kept as the raw (name, value) pairs the parser produced; the lookup index is
built only when something asks (most successful responses are never looked at)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping


class Headers(Mapping[str, str]):
    """Case-insensitive, multi-valued; `get`/`[]` give the first value, `getall` every value."""

    __slots__ = ("_index", "_raw")

    def __init__(self, raw: list[tuple[bytes, bytes]] | None = None) -> None:
        self._raw: list[tuple[bytes, bytes]] = raw if raw is not None else []
        self._index: dict[str, list[str]] | None = None

    def _build(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for name, value in self._raw:
            index.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1").strip())
        self._index = index
        return index

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        values = (self._index or self._build()).get(name.lower())
        return values[0] if values else default

    def getall(self, name: str) -> list[str]:
        return list((self._index or self._build()).get(name.lower(), ()))

    def __getitem__(self, name: str) -> str:
        values = (self._index or self._build()).get(name.lower())
        if not values:
            raise KeyError(name)
        return values[0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in (self._index or self._build())

    def __iter__(self) -> Iterator[str]:
        return iter(self._index or self._build())

    def __len__(self) -> int:
        return len(self._index or self._build())

    def raw(self) -> list[tuple[bytes, bytes]]:
        """Every header line in arrival order, names in the server's case."""
        return list(self._raw)

    def __repr__(self) -> str:
        return f"Headers({[(n.decode('latin-1'), v.decode('latin-1')) for n, v in self._raw]!r})"
