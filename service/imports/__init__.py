"""Importing `.keras` files: archive checks, the throw-away process, the registry."""
