"""How requests to ModelArts prove who sends them: AK/SK signing (permanent, or temporary with a
security token), the host agency's credentials from the metadata service, and IAM tokens."""
