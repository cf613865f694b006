"""``python -m polyroute.learned_router router train|eval ...``."""

import sys

from polyroute.learned_router.cli import main

sys.exit(main())
