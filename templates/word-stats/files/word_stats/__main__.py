import sys

from word_stats.cli import main

sys.exit(main())
