"""Photos + config -> checkpoints: the epoch loop, optimizer, weight average, run folder, the train command."""
