"""Leaf utilities: device choice, machine info, atomic writes, number formatting, the config error."""
