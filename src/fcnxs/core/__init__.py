"""The bottom layer: what every other layer shares. Errors users see, writing files
atomically, progress, the VOC palette and the void label, numeric precisions and the
devices and processes that run them, and the check that no output replaces an input."""
