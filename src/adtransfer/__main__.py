import sys

from adtransfer.cli import main

sys.exit(main())
