"""Making a model (torch): records and splits, augmentation, networks, the training loop, validation-only
fitting, checkpoints, export, quantisation and the Keras import. Nothing on the runtime side imports it."""
