# Runs after boot.py on every reset; everything lives in app (compiled to .mpy).
import app

app.main()
