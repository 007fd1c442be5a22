"""The development stack of byok-operator (see ``byok_dev.stack``)."""
