import sys

from petalnet.cli import main

sys.exit(main())
