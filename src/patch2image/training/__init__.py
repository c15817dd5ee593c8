"""Training: the loss, the augmentation and the resumable training loop shared by every phase."""
