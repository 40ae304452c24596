"""Answering questions about a user's own videos: ``marc ask`` and ``main.py predict``.

``questions`` checks a question and reads question files, ``store`` keeps the persistent
clip memory (encode a video once, ask it many questions), ``answerer`` answers one
question and times each phase, ``writer`` appends ``predictions.jsonl``; ``data`` and
``module`` are the predict-only data module and LightningModule that ``main.py predict``
drives.
"""
