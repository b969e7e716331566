import sys

from itemrec.cli import main

sys.exit(main())
