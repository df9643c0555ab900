"""The thin Ray layer: the only package (with the entry points) that imports `ray`."""
