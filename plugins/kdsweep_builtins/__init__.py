"""kdsweep's first-party plugins, written only against :mod:`kdsweep.plugin`.

Each module is its own plugin, registered through the ``kdsweep`` entry-point group
exactly as a third-party plugin is (see ``pyproject.toml``).
"""
