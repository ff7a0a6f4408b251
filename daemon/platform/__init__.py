"""Desktop and operating-system specifics, one module per system."""
