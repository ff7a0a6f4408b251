"""passeur front end: the system-tray icon, its menu, dialogs and notifications."""
