"""Sending the dossier to the accountant: snapshot and pack a `.wvz`, then a destination."""
