"""Inpainting methods: the registry (`METHODS`) and one module per family."""

from model.methods.registry import METHODS, MethodSpec, load_method

__all__ = ["METHODS", "MethodSpec", "load_method"]
