"""Data package for IOI Desktop: the bundled model, word lists, icons, prompt sets.

Nothing here is code; the package exists so that installers and editable
installs ship these files. Find them with ``ioi_desktop.core.paths.resources_dir()``.
"""
