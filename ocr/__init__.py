"""Line recognition: charset, CRNN-CTC model, training, batched inference, metrics."""
