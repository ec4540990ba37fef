"""The raw-id served model: what it looks items up in (`catalog`), the request contract it checks
(`requests`), and how a request becomes the model's inputs and a score (`scorer`)."""
