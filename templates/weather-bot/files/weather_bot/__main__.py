import sys

from weather_bot.bot import main

sys.exit(main())
