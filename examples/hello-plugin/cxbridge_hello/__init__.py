"""cxbridge-hello: the smallest complete cxbridge plugin (see ``plugin.py``)."""

__version__ = "0.1.0"
