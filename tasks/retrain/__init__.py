"""Retrain: assembling a new training snapshot from served outcomes and reviews."""
