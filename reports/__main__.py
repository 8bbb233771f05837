"""``python -m reports RESULTS_DIR [--out DIR] [--format ...]``: see reports.build."""

import sys

from reports.build import main

sys.exit(main())
