"""Computer vision: image types, item transforms, GPU batch augmentation, data loaders, learners and display.

Import from the submodules (``lamina.vision.core``, ``lamina.vision.data`` ...) or from the star-import
surface ``lamina.vision.all``; this package re-exports nothing.
"""
