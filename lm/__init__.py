"""Names-aware CTC decoding: the KenLM names model (``lm.build``) and the pyctcdecode decoders (``lm.decoder``)."""
