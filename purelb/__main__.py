import sys

from purelb.cli import main

sys.exit(main())
