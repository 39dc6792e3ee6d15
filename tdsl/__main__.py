import sys

from tdsl.cli import main

sys.exit(main())
