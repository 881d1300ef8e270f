"""The autodev command line, on top of every other layer."""
