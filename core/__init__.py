"""Image similarity search engine: VGG16 descriptors, an index, search. No Qt here."""

__version__ = "0.1.0"
