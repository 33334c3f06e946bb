import sys

from twinpipe.runtime.cli import main

sys.exit(main())
