"""Dataset readers (published on-disk formats), video decoding and clip sampling."""
