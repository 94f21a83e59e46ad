"""Data access and loading: dataset downloads, file listing, transforms, blocks, splitters and loaders.

Import from the submodules (``lamina.data.external``, ``lamina.data.files``, ...) or from the
star-import surfaces (``lamina.vision.all``, ``lamina.basics``); this package re-exports nothing.
"""
