"""The Gradio demo: upload a masked face and compare every method side by side."""
