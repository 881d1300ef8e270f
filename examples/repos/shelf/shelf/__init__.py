"""shelf: what is on the shelves, and how many of each."""

from shelf.inventory import Inventory

__all__ = ["Inventory"]
