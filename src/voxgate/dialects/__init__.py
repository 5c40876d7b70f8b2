"""Wire dialects: each folder is one API voxgate speaks (protocol.py + routes.py + attach(app))."""
