"""The live app: the engine's stages as Faust agents over Kafka (``flowguard worker``)."""
