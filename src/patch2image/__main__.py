import sys

from patch2image.cli import main

sys.exit(main())
