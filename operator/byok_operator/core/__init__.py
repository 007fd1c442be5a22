"""The pure core: decisions as functions of data, no I/O and no kopf."""
