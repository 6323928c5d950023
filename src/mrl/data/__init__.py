"""Datasets: loaders that validate their files and explain how to obtain missing ones."""
