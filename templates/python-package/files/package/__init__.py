"""{{ project }}: see REQUIREMENTS.md."""

# TODO(autodev): implement the package as REQUIREMENTS.md describes.
