"""vae-anomaly: unsupervised anomaly detection in brain MRI with a convolutional VAE."""

__version__ = "0.1.0"
