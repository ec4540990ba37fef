"""Raw logs in: sources (MovieLens, Amazon, Taobao, Tmall, your own table, synthetic), ingest, the synthetic generator and its truth."""
