"""Training side: datasets, augmentation, models, trainer (torch is imported only by the modules that need it)."""
