"""Entry point: `python main.py` opens the GUI, `python main.py SUBCOMMAND` runs headless work."""

from station.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
