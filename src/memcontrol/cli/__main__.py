"""``python -m memcontrol.cli``: the ``memcontrol`` command."""

import sys

from memcontrol.cli import main

sys.exit(main())
