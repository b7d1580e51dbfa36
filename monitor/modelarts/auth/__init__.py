"""How requests to ModelArts prove who sends them: AK/SK signing and IAM tokens."""
