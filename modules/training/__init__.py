"""Fine-tuning (train.py): data, objective, checkpoint state and the resumable training loop."""
