import sys

from captum_rise.cli import main

sys.exit(main())
