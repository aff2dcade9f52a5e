# Runs first on every reset. Kept empty on purpose: anything that fails here
# would stop main.py from starting, and main.py is what never strands the device.
