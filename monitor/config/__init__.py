"""The settings: schema, value types and YAML loading; nothing here talks to the network."""
