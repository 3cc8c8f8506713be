"""nslib: neuron sensitivity and Sensitive Neuron Stabilizing (SNS), a course library."""
__version__ = "0.1.0"
