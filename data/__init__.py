"""Data: webdataset reading and writing, the shard tool, the DataModule and the embedded demo data."""
