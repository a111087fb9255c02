"""The GLiNER torch model: no spaCy in here."""
