"""Neighbourhood models: item/user kNN, co-visitation and random walks on the graph."""
