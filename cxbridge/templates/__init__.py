"""Files ``cxbridge init`` writes (read with :mod:`importlib.resources`)."""
