"""Training subpackage: datasets, FED trainer, logit statistics and evaluation CLIs (depends on
ros2_fed, never the reverse)."""
