"""The bundled IOI model: its corpus, tokenizer, training and evaluation.

No pretrained weights can be downloaded where the app runs, so the app ships a
small GPT-2-architecture model trained from scratch by this package
(``python -m ioi_desktop.bundled.train``) and checked by
``python -m ioi_desktop.bundled.evaluate``.
"""
