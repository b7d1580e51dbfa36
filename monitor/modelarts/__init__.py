"""The only code that speaks the ModelArts API: client, transport, auth, parsing at the edge."""
