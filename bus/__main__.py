"""``python -m bus`` is the ``hookbus`` command."""

from bus.cli import main

main()
