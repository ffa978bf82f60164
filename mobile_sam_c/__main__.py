"""__main__.py - ``python -m mobile_sam_c``: the same command as the ``mobile-sam-c`` script
(see cli.py), for environments where the console script is not on PATH."""
from .cli import main

raise SystemExit(main())
