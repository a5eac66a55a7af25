"""The Kafka side of fraud-console: generator, detector, embedded broker and tools."""
