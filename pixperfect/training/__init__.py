"""Training: the LightningModule (GAN step), EMA, validation metrics and the run wiring."""
