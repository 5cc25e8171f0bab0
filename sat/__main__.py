import sys

from sat.cli import main

sys.exit(main())
