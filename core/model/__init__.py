"""The model: networks, model card, inference, Grad-CAM, scene mode, metrics."""
