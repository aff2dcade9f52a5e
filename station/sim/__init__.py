"""The simulated radio ("air") and devices running the real firmware on the MicroPython unix port.

Used by `station sim-device`, `station sim`, the GUI's --demo and the end-to-end tests.
"""
