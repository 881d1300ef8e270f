import pytest
from shelf import Inventory


def test_added_items_are_counted():
    stock = Inventory()
    stock.add("apple", 3)
    stock.add("apple")
    assert stock.count("apple") == 4
    assert stock.count("pear") == 0


def test_adding_nothing_is_refused():
    with pytest.raises(ValueError, match="apple"):
        Inventory().add("apple", 0)
