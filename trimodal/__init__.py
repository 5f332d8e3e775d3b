"""trimodal."""
