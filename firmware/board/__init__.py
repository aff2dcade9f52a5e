# The only place that touches hardware. Everything else imports Board from here.
#
# On an ESP32 this is the real radio, pins and DHT11. Anywhere else (the
# MicroPython unix port) it is the simulated board of station/sim: its files are
# named host_* so they can never shadow a real module if copied to a board.
import sys

if sys.platform == "esp32":
    from board.esp32 import Board
else:
    from board.host_board import Board
