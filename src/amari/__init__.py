"""amari: mine a consistent synthetic identity and measure how well Textual Inversion learns it."""

__version__ = "0.1.0"
