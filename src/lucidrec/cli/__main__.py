"""``python -m lucidrec.cli``: the ``lucidrec`` command."""

from lucidrec.cli import main

main()
