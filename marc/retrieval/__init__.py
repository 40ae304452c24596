"""Visual Memory Retriever: event segmentation, clip / query encoders, clip memory, retrieval."""
