"""Every Qt widget and model of the station; nothing outside this package imports QtWidgets."""
