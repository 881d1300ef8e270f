"""The inventory: item names and their counts."""


class Inventory:
    def __init__(self) -> None:
        self._items: dict[str, int] = {}

    def add(self, name: str, count: int = 1) -> None:
        """Put `count` more of `name` on the shelves."""
        if count < 1:
            raise ValueError(f"cannot add {count} of {name!r}: add at least one")
        self._items[name] = self._items.get(name, 0) + count

    def count(self, name: str) -> int:
        """How many of `name` there are (0 for an item never added)."""
        return self._items.get(name, 0)

    def load_csv(self, path: str) -> None:
        """Read `name,count` lines from a CSV file (not written yet)."""
        raise NotImplementedError("CSV import is planned for 0.4")
