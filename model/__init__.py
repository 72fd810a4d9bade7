"""unmask's model package: faces, masks, datasets, networks, methods, training and evaluation."""
