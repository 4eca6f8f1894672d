"""Hot spot analyses: grids, KDE, spatial weights, Gi*/LISA, emerging hot spots, change, near repeat."""
