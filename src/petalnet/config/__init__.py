"""What a run learns: TrainConfig (every training setting, typed, declared once), recipes, image sizes."""
