import sys

from cocalc_tasks.cli import main

sys.exit(main())
