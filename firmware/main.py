# Runs after boot.py on every reset; everything lives in app (compiled to .mpy).
# Even a failing import (a broken deploy, no RAM) ends in a reset, not at a REPL
# without the setup AP. (The unix port has no machine.reset(): exit code 3 is the
# simulation's reset, so a crash at boot restarts there too.) Kept tiny: it stays in RAM.
try:
    __import__("fwboot")  # the firmware set that boots, first on sys.path (OTA)
    import app

    app.main()
except Exception as e:
    import machine
    import sys
    import time

    sys.print_exception(e)
    time.sleep(1)  # a window for Ctrl-C (mpremote) before the next try
    if hasattr(machine, "reset"):
        machine.reset()
    sys.exit(3)  # the unix port: its launcher's reset (board/host_board.py REBOOT_EXIT)
