"""Units: polygon levels, H3 cells, the hierarchy and crosswalk, and exact point → unit assignment."""
