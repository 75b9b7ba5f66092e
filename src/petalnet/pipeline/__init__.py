"""Photo -> tensors -> batches: decode, eval preprocessing, the decoded-photo cache, augmentation, loaders."""
